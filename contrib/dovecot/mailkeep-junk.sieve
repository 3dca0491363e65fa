# mailkeep-junk.sieve -- file mail that mailkeep-block tagged for this
# recipient into the Junk folder.  See mailkeep-block(8).
#
# mailkeep-block adds one "X-Mailkeep-Blocked: ADDRESS" header for each
# recipient whose personal block list matched the sender and whose mode is
# "tag" (the block_mode attribute, else [block] personal_action).  It
# removes any such header the message arrived with, so only its own
# headers are present.  If you change [block] tag_header, change the name
# below too.
#
# Install as a sieve_before script, so it runs before the user's own
# script, and precompile it (the LMTP/LDA process may not be able to
# write next to it):
#
#   plugin {
#     sieve_before = /etc/dovecot/sieve/mailkeep-junk.sieve
#   }
#
#   sievec /etc/dovecot/sieve/mailkeep-junk.sieve
#
# The address in the header is the RCPT TO address as mailkeep-block saw
# it, in lower case.  Matching is exact (one header per recipient, any of
# them may match) and ignores case.  If Postfix rewrites the recipient
# before delivery (virtual_alias_maps), the envelope recipient Dovecot sees
# differs and the message stays in the inbox.

require ["fileinto", "mailbox", "envelope", "variables"];

if envelope :all :matches "to" "*" {
    set :lower "rcpt" "${1}";
}

if allof (not string :is "${rcpt}" "",
          header :is "X-Mailkeep-Blocked" "${rcpt}") {
    # :create makes the folder when the user has none yet.  Use your
    # site's name for the \Junk folder if it is not "Junk".
    fileinto :create "Junk";
    # Leave the user's own script out: no vacation reply or redirect for
    # a sender the user blocked.
    stop;
}
