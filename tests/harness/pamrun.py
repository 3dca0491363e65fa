"""Run PAM operations through libpamtest (pypamtest) under pam_wrapper.

Started by pamenv.PamStack.pam() with LD_PRELOAD=libpam_wrapper.so,
PAM_WRAPPER=1 and PAM_WRAPPER_SERVICE_DIR set, so that the service files
are the test's own. Reads a JSON request on standard input:
  {"user": U, "service": S, "ops": ["authenticate", "account", ...],
   "echo_off": [answers to hidden prompts], "echo_on": [...]}
and prints {"rc": [return code of each op run], "info": [...], "errors": [...]}:
the operations run in order in one PAM transaction, up to the first that
does not return PAM_SUCCESS.
"""
import json
import re
import sys

import pypamtest

OPS = {'authenticate': pypamtest.PAMTEST_AUTHENTICATE,
       'account': pypamtest.PAMTEST_ACCOUNT,
       'chauthtok': pypamtest.PAMTEST_CHAUTHTOK}


def main():
    req = json.load(sys.stdin)
    cases = [pypamtest.TestCase(OPS[op]) for op in req['ops']]
    try:
        res = pypamtest.run_pamtest(req['user'], req['service'], cases,
                                    req.get('echo_off', []), req.get('echo_on', []))
        out = {'rc': [0] * len(cases), 'info': list(res.info), 'errors': list(res.errors)}
    except pypamtest.PamTestError as e:
        # "Error [N]: Test case { pam_operation [OP] ... } returned [RC]"
        m = re.search(r'pam_operation \[(\d+)\].*returned \[(\d+)\]', str(e))
        if not m:
            raise
        failed_op, rc = int(m.group(1)), int(m.group(2))
        codes = []
        for case in cases:
            if case.pam_operation == failed_op:
                codes.append(rc)
                break
            codes.append(0)
        out = {'rc': codes, 'info': [], 'errors': [str(e)]}
    json.dump(out, sys.stdout)


if __name__ == '__main__':
    main()
