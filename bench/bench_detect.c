/*
 * bench_detect - how fast mk_detect_scan() goes over mail text.
 *
 * Usage: bench_detect [MEGABYTES [ENGINE]]   (default 64, every engine)
 *
 * Generates, from a fixed seed, text like the body of business mail in
 * Taiwan - Chinese and English sentences with full-width punctuation,
 * dates, times, amounts - in three variants: without personal data,
 * with personal data at a realistic density (about one item per KB:
 * signatures, forms, a pasted spreadsheet row), and plain English. Each
 * is scanned with the full built-in set on every engine there is, one
 * thread, best of 3 runs; MB/s is 10^6 bytes of input per second.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mk_detect.h"
#include "mk_text.h"
#include "mk_util.h"

static uint64_t bench_rng_state = 0x9E3779B97F4A7C15u;

static uint32_t bench_rng(void)
{
    bench_rng_state ^= bench_rng_state << 13;
    bench_rng_state ^= bench_rng_state >> 7;
    bench_rng_state ^= bench_rng_state << 17;
    return (uint32_t) (bench_rng_state >> 16);
}

/*
 * Vocabulary roughly in order of frequency; words are drawn with a
 * Zipf-like skew (see bench_pick), so function words dominate as in
 * real prose and the rare words at the end - several of which contain
 * a keyword ("hotel", "search", "account"...) - turn up now and then.
 */
static const char *const bench_zh[] = {
    "的", "我們", "是", "在", "和", "了", "有", "這個", "請", "也", "與", "就", "會", "要",
    "可以", "已經", "今天", "明天", "下週", "會議", "討論", "專案", "進度", "客戶", "產品",
    "計畫", "報告", "主管", "同事", "部門", "公司", "時間", "問題", "資料", "附件", "檔案",
    "確認", "處理", "協助", "安排", "通知", "回覆", "說明", "需要", "希望", "謝謝", "您的",
    "幫忙", "如有", "歡迎", "隨時", "聯繫", "市場", "策略", "預算", "時程", "目標", "業績",
    "成長", "營收", "第三季", "年度", "合約", "簽訂", "供應商", "交貨", "品質", "檢驗", "結果",
    "符合", "標準", "系統", "升級", "維護", "測試", "上線", "版本", "功能", "設計", "開發",
    "工程師", "訓練", "課程", "報名", "截止", "日期", "辦公室", "搬遷", "會議室", "預約",
    "出差", "台北", "新竹", "台中", "高雄", "飯店", "機票", "行程", "費用", "報帳", "發票",
    "付款", "採購", "訂單", "庫存", "出貨", "物流", "保固", "維修", "客服", "滿意度", "調查",
    "分析", "數據", "趨勢", "競爭", "優勢", "風險", "評估", "改善", "建議", "方案", "執行",
    "電話會議", "視訊", "簡報", "投影片", "紀錄", "摘要", "重點", "決議", "待辦", "負責人",
    "帳號", "密碼", "權限", "申請", "核准", "簽核", "流程", "規定", "政策", "公告", "人資",
};

static const char *const bench_en[] = {
    "the", "to", "and", "of", "a", "in", "for", "is", "on", "that", "we", "you", "this",
    "with", "be", "it", "are", "will", "as", "at", "please", "by", "our", "from", "have",
    "can", "an", "or", "not", "if", "your", "all", "has", "was", "they", "next", "week",
    "meeting", "project", "team", "update", "review", "attached", "thanks", "regards",
    "schedule", "customer", "report", "budget", "release", "version", "quarter", "plan",
    "status", "issue", "feedback", "question", "document", "deadline", "today", "tomorrow",
    "market", "strategy", "sales", "growth", "target", "revenue", "supplier", "contract",
    "delivery", "quality", "system", "upgrade", "maintenance", "testing", "launch",
    "design", "engineering", "support", "approval", "finance", "legal", "department",
    "office", "training", "course", "travel", "Taipei", "Hsinchu", "partners", "discuss",
    "confirm", "arrange", "follow", "share", "check", "send", "need", "help", "let", "know",
    "should", "would", "about", "after", "before", "during", "again", "also", "more",
    "order", "invoice", "payment", "shipping", "inventory", "warranty", "service", "survey",
    "analysis", "data", "trend", "risk", "proposal", "summary", "minutes", "action", "owner",
    "hotel", "search", "telephone", "account", "tell", "research", "archive", "march",
};

/* An index into a list of n, skewed towards the start (about Zipf's law). */
static size_t bench_pick(size_t n)
{
    double u = (double) (bench_rng() % 1000000) / 1e6;

    return (size_t) ((double) n * u * u * u) % n;
}

static const char *const bench_zh_punct[] = {"，", "。", "、", "：", "；", "！", "？", "「", "」"};

/* Harmless numbers: years, dates, times, amounts, percentages, room numbers. */
static size_t bench_number(char *p, size_t room)
{
    switch (bench_rng() % 6) {
    case 0:
        return (size_t) snprintf(p, room, "%u年", 2015 + bench_rng() % 12);
    case 1:
        return (size_t) snprintf(p, room, "%u月%u日", 1 + bench_rng() % 12, 1 + bench_rng() % 28);
    case 2:
        return (size_t) snprintf(p, room, "%u:%02u", 8 + bench_rng() % 10, bench_rng() % 60);
    case 3:
        return (size_t) snprintf(p, room, "NT$%u,%03u", 1 + bench_rng() % 99, bench_rng() % 1000);
    case 4:
        return (size_t) snprintf(p, room, "%u%%", bench_rng() % 100);
    default:
        return (size_t) snprintf(p, room, "%u號", 100 + bench_rng() % 900);
    }
}

/* Personal data as it turns up in mail, with near misses among it. */
static const char *const bench_pii[] = {
    "身分證字號：A123456789", "F131104093", "電話：02-2345-6789", "手機 0912-345-678",
    "Tel: +886 912 345 678", "alice.chen@example.com.tw", "電子郵件：bob@example.org",
    "信用卡號 4111 1111 1111 1111", "5555555555554444", "IBAN DE89 3704 0044 0532 0130 00",
    "居留證號 AA12345675", "護照號碼：312345678", "A123456788", "4111111111111112",
    "訂單 123456789", "(02)2345-6789", "０９１２－３４５－６７８", "Ａ１２３４５６７８９",
};

enum bench_kind { BENCH_CLEAN, BENCH_PII, BENCH_ENGLISH };

static char *bench_text(size_t size, enum bench_kind kind, size_t *len)
{
    char *t = mk_xmalloc(size + 256);
    size_t n = 0, next_pii = 1024;

    while (n < size) {
        bool english = kind == BENCH_ENGLISH || bench_rng() % 2;
        int words = 4 + (int) (bench_rng() % 12);

        for (int w = 0; w < words; w++) {
            const char *word = english ? bench_en[bench_pick(MK_ARRAY_LEN(bench_en))]
                : bench_zh[bench_pick(MK_ARRAY_LEN(bench_zh))];
            size_t wl = strlen(word);

            if (english && w > 0)
                t[n++] = ' ';
            memcpy(t + n, word, wl);
            n += wl;
            if (bench_rng() % 16 == 0) {
                if (english)
                    t[n++] = ' ';
                n += bench_number(t + n, 64);
            }
            if (!english && bench_rng() % 6 == 0) {
                const char *p = bench_zh_punct[bench_rng() % MK_ARRAY_LEN(bench_zh_punct)];

                memcpy(t + n, p, strlen(p));
                n += strlen(p);
            }
        }
        if (english) {
            t[n++] = ". ,!"[bench_rng() % 4];
            t[n++] = ' ';
        } else {
            memcpy(t + n, "。", 3);
            n += 3;
        }
        if (bench_rng() % 8 == 0)
            t[n++] = '\n';
        if (kind == BENCH_PII && n >= next_pii) {
            const char *p = bench_pii[bench_rng() % MK_ARRAY_LEN(bench_pii)];

            memcpy(t + n, p, strlen(p));
            n += strlen(p);
            t[n++] = '\n';
            next_pii = n + 512 + bench_rng() % 1024;
        }
    }
    *len = n;
    return t;
}

static double bench_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int bench_count(void *arg, const struct mk_detect_match *m)
{
    (void) m;
    ++*(size_t *) arg;
    return 0;
}

static void bench_scan(const char *label, const struct mk_detect *d, const char *text, size_t len)
{
    struct mk_detect_scratch *s = mk_detect_scratch_new(d);
    double best = 0;
    size_t matches = 0;

    for (int run = 0; run < 4; run++) {         /* the first run warms up */
        double t0, t1;

        matches = 0;
        t0 = bench_now();
        if (mk_detect_scan(d, s, text, len, bench_count, &matches) < 0) {
            printf("%s: scan failed\n", label);
            break;
        }
        t1 = bench_now();
        if (run > 0 && (best == 0 || t1 - t0 < best))
            best = t1 - t0;
    }
    printf("  %-10s %-10s %8.0f MB/s  %8zu matches\n", label, mk_detect_engine(d),
           best > 0 ? (double) len / 1e6 / best : 0.0, matches);
    mk_detect_scratch_free(s);
}

static void bench_fold(const char *text, size_t len)
{
    char *buf = NULL;
    size_t size = 0, out = 0;
    double best = 0;

    for (int run = 0; run < 4; run++) {
        double t0 = bench_now(), t1;

        (void) mk_text_fold_buf(text, len, &buf, &size, &out);
        t1 = bench_now();
        if (run > 0 && (best == 0 || t1 - t0 < best))
            best = t1 - t0;
    }
    printf("  %-10s %-10s %8.0f MB/s  (%s)\n", "fold only", "", (double) len / 1e6 / best,
           buf && out < len ? "copied" : "nothing to fold");
    free(buf);
}

int main(int argc, char **argv)
{
    static const char *const names[] = {"clean", "pii", "english"};
    size_t size = (size_t) (argc > 1 ? atol(argv[1]) : 64) * 1024 * 1024;
    const char *only = argc > 2 ? argv[2] : NULL;
    struct mk_detect *d[2] = {NULL, NULL};
    char *error = NULL;

    d[0] = mk_detect_create(NULL, 0, NULL, &error);
    setenv("MK_DETECT_ENGINE", "pcre2", 1);
    d[1] = mk_detect_create(NULL, 0, NULL, &error);
    if (d[0] == NULL || d[1] == NULL) {
        fprintf(stderr, "bench_detect: %s\n", error);
        return 1;
    }
    if (strcmp(mk_detect_engine(d[0]), mk_detect_engine(d[1])) == 0) {
        mk_detect_free(d[1]);
        d[1] = NULL;
    }
    for (int kind = BENCH_CLEAN; kind <= BENCH_ENGLISH; kind++) {
        size_t len;
        char *text;

        bench_rng_state = 0x9E3779B97F4A7C15u + (uint64_t) kind;
        text = bench_text(size, (enum bench_kind) kind, &len);
        printf("%s: %.1f MB\n", names[kind], (double) len / 1e6);
        bench_fold(text, len);
        for (int i = 0; i < 2; i++)
            if (d[i] && (only == NULL || strncmp(mk_detect_engine(d[i]), only, strlen(only)) == 0))
                bench_scan(names[kind], d[i], text, len);
        free(text);
    }
    mk_detect_free(d[0]);
    mk_detect_free(d[1]);
    return 0;
}
