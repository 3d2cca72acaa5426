/*
 * bench_common.h — helpers shared by the sync benchmarks (sync_throughput.c,
 * resume.c, drain_memory.c): timing, percentiles, files, machine/library
 * information, the deterministic action generator and the in-process drain
 * loop (fs_sync_prepare -> fs_hub_handle -> fs_sync_receive).
 *
 * Header-only (static functions), so each benchmark stays one translation
 * unit: `cc ... prog.c -lfieldsync -lsqlite3 -ljansson`.
 * apply_latency.c predates this header and keeps its own copies.
 */
#ifndef FIELDSYNC_BENCH_COMMON_H
#define FIELDSYNC_BENCH_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "fieldsync.h"

/* Not every benchmark uses every helper. */
#pragma GCC diagnostic ignored "-Wunused-function"

/* ------------------------------------------------------------------------ */
/* Schema and workload (same record type as apply_latency.c)                */
/* ------------------------------------------------------------------------ */

static const char *BENCH_SCHEMA =
    "{\"version\":1,\"types\":{\"task\":{\"fields\":{"
    "\"status\":{\"type\":\"string\"},"
    "\"site\":{\"type\":\"string\"},"
    "\"picked\":{\"type\":\"int\",\"merge\":\"counter\"},"
    "\"tags\":{\"type\":\"set\"}},"
    "\"required\":[\"status\"]}}}";

#define BENCH_DEVICE_ID "bench-dev-1"
#define BENCH_N_STATUS 5
#define BENCH_N_TAGS 16
#define BENCH_N_SITES 40
#define BENCH_N_ACTORS 40

static const char *BENCH_STATUSES[BENCH_N_STATUS] = {"open", "picked", "staged", "shipped", "blocked"};

/* Kinds: a record's first action is a create (lww set of status + site); later
 * actions are, with equal probability, a counter increment (inc picked), an
 * lww set (set status) or a set add (add one of 16 tags). */
enum { A_CREATE = 0, A_INC = 1, A_SET = 2, A_ADD = 3, A_KINDS = 4 };
static const char *A_NAMES[A_KINDS] = {"create (lww set status+site)", "counter inc picked", "lww set status",
                                       "set add tags"};

typedef struct {
    uint8_t kind;
    uint8_t arg;   /* status, site or tag index */
    uint8_t actor;
    int32_t rec;   /* record index: id "T-%07d" */
} bench_action_t;

static const char *g_prog = "bench";

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fprintf(stderr, "%s: ", g_prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

typedef struct { uint64_t s; } bench_rng_t;
static uint64_t rng_next(bench_rng_t *r) { /* xorshift64* */
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

/* Streaming generator: the same seed gives the same sequence, so a backlog of
 * a million actions never has to be held in memory. */
typedef struct {
    bench_rng_t rng;
    long n_records;
    uint8_t *created; /* bitmap, one byte per record */
    long counts[A_KINDS];
} bench_gen_t;

static void gen_init(bench_gen_t *g, long n_records, uint64_t seed) {
    memset(g, 0, sizeof *g);
    g->rng.s = seed ? seed : 0x9E3779B97F4A7C15ull;
    g->n_records = n_records;
    g->created = calloc((size_t)n_records, 1);
    if (!g->created) die("out of memory");
}

static void gen_free(bench_gen_t *g) { free(g->created); g->created = NULL; }

static bench_action_t gen_next(bench_gen_t *g) {
    bench_action_t a;
    a.rec = (int32_t)(rng_next(&g->rng) % (uint64_t)g->n_records);
    a.actor = (uint8_t)(rng_next(&g->rng) % BENCH_N_ACTORS);
    uint64_t r = rng_next(&g->rng);
    if (!g->created[a.rec]) {
        g->created[a.rec] = 1;
        a.kind = A_CREATE;
        a.arg = (uint8_t)(r % BENCH_N_SITES);
    } else {
        a.kind = (uint8_t)(1 + r % 3);
        a.arg = (uint8_t)((r >> 8) % (a.kind == A_SET ? BENCH_N_STATUS : BENCH_N_TAGS));
    }
    g->counts[a.kind]++;
    return a;
}

static void bench_rec_id(char *buf, size_t n, long rec) { snprintf(buf, n, "T-%07ld", rec); }

static void bench_input_json(char *buf, size_t n, long i) {
    snprintf(buf, n, "{\"scanner\":\"sc-%02ld\",\"bin\":\"B-%03ld-%02ld\",\"qty\":1}", i % 17, (i * 7) % 1000, i % 50);
}

/* The host's action JSON for one generated action (i = action index). */
static void bench_action_json(char *buf, size_t n, const bench_action_t *a, long i) {
    char id[32], in[96];
    bench_rec_id(id, sizeof id, a->rec);
    bench_input_json(in, sizeof in, i);
    switch (a->kind) {
    case A_CREATE:
        snprintf(buf, n,
                 "{\"action\":\"create_task\",\"actor\":\"op-%02d\",\"type\":\"task\",\"id\":\"%s\","
                 "\"set\":{\"status\":\"open\",\"site\":\"site-%02d\"},\"input\":%s}",
                 a->actor, id, a->arg, in);
        break;
    case A_INC:
        snprintf(buf, n,
                 "{\"action\":\"pick_item\",\"actor\":\"op-%02d\",\"type\":\"task\",\"id\":\"%s\","
                 "\"inc\":{\"picked\":1},\"input\":%s}",
                 a->actor, id, in);
        break;
    case A_SET:
        snprintf(buf, n,
                 "{\"action\":\"set_status\",\"actor\":\"op-%02d\",\"type\":\"task\",\"id\":\"%s\","
                 "\"set\":{\"status\":\"%s\"},\"input\":%s}",
                 a->actor, id, BENCH_STATUSES[a->arg], in);
        break;
    default:
        snprintf(buf, n,
                 "{\"action\":\"tag_task\",\"actor\":\"op-%02d\",\"type\":\"task\",\"id\":\"%s\","
                 "\"add\":{\"tags\":[\"tag-%02d\"]},\"input\":%s}",
                 a->actor, id, a->arg, in);
        break;
    }
}

static void print_kind_counts(const long counts[A_KINDS]) {
    printf("action mix:");
    for (int k = 0; k < A_KINDS; k++) printf("%s %ld %s", k ? "," : "", counts[k], A_NAMES[k]);
    printf("\n");
}

/* ------------------------------------------------------------------------ */
/* Time                                                                     */
/* ------------------------------------------------------------------------ */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------ */
/* Statistics                                                               */
/* ------------------------------------------------------------------------ */

typedef struct {
    double p50, p99, max, mean, sum; /* milliseconds */
    long n;
} bench_stats_t;

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentiles, in milliseconds. */
static bench_stats_t stats_ms(const int64_t *ns, long n) {
    bench_stats_t s = {0, 0, 0, 0, 0, n};
    if (n <= 0) return s;
    int64_t *v = malloc(sizeof *v * (size_t)n);
    memcpy(v, ns, sizeof *v * (size_t)n);
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    long i50 = (n * 50 + 99) / 100 - 1, i99 = (n * 99 + 99) / 100 - 1;
    double sum = 0;
    for (long i = 0; i < n; i++) sum += (double)v[i];
    s.p50 = v[i50 < 0 ? 0 : i50] / 1e6;
    s.p99 = v[i99 < 0 ? 0 : i99] / 1e6;
    s.max = v[n - 1] / 1e6;
    s.sum = sum / 1e6;
    s.mean = s.sum / n;
    free(v);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Files                                                                    */
/* ------------------------------------------------------------------------ */

static void copy_file(const char *src, const char *dst) {
    FILE *in = fopen(src, "rb");
    if (!in) die("open %s: %s", src, strerror(errno));
    FILE *out = fopen(dst, "wb");
    if (!out) die("create %s: %s", dst, strerror(errno));
    static char buf[1 << 20];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) die("write %s: %s", dst, strerror(errno));
    fclose(in);
    if (fflush(out) != 0 || fsync(fileno(out)) != 0) die("flush %s", dst);
    fclose(out);
}

static void remove_db(const char *p) {
    char s[PATH_MAX + 64];
    unlink(p);
    snprintf(s, sizeof s, "%s-wal", p);
    unlink(s);
    snprintf(s, sizeof s, "%s-shm", p);
    unlink(s);
    snprintf(s, sizeof s, "%s-journal", p);
    unlink(s);
}

/* Copies an SQLite database (plus its -wal if present; no -shm). The source
 * must not be open for writing. */
static void copy_db(const char *src, const char *dst) {
    char s[PATH_MAX + 64], d[PATH_MAX + 64];
    remove_db(dst);
    copy_file(src, dst);
    snprintf(s, sizeof s, "%s-wal", src);
    snprintf(d, sizeof d, "%s-wal", dst);
    if (access(s, F_OK) == 0) copy_file(s, d);
}

static long long file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

/* Size of a database file plus its WAL. */
static long long db_size(const char *p) {
    char s[PATH_MAX + 64];
    snprintf(s, sizeof s, "%s-wal", p);
    long long a = file_size(p), b = file_size(s);
    return (a > 0 ? a : 0) + (b > 0 ? b : 0);
}

static const char *fs_type_name(const char *path) {
    struct statfs sf;
    if (statfs(path, &sf) != 0) return "?";
    switch ((unsigned long)sf.f_type) {
    case 0xEF53: return "ext2/3/4";
    case 0x01021994: return "tmpfs (fsync is a no-op!)";
    case 0x794c7630: return "overlayfs";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x2FC12FC1: return "zfs";
    default: return "other";
    }
}

/* Creates the working directory (--dir, else $TMPDIR or /var/tmp). */
static void make_workdir(char *dir, size_t n, const char *opt, const char *stem) {
    if (opt) {
        snprintf(dir, n, "%s", opt);
        mkdir(dir, 0700);
    } else {
        const char *t = getenv("TMPDIR");
        snprintf(dir, n, "%s/%s-XXXXXX", t && *t ? t : "/var/tmp", stem);
        if (!mkdtemp(dir)) die("mkdtemp %s: %s", dir, strerror(errno));
    }
}

/* ------------------------------------------------------------------------ */
/* Memory                                                                   */
/* ------------------------------------------------------------------------ */

/* A "VmXxx:" line of /proc/self/status, in KiB (-1 if absent). */
static long proc_status_kib(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    size_t k = strlen(key);
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, k) && line[k] == ':') {
            v = atol(line + k + 1);
            break;
        }
    fclose(f);
    return v;
}

/* Current resident set from /proc/self/statm, in KiB (cheap enough to call
 * after every sync step). */
static long rss_now_kib(void) {
    static long page_kib = 0;
    if (!page_kib) page_kib = sysconf(_SC_PAGESIZE) / 1024;
    int fd = open("/proc/self/statm", O_RDONLY);
    if (fd < 0) return -1;
    char buf[128];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    long size = 0, resident = 0;
    if (sscanf(buf, "%ld %ld", &size, &resident) != 2) return -1;
    return resident * page_kib;
}

static long maxrss_kib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss; /* KiB on Linux */
}

/* ------------------------------------------------------------------------ */
/* CPU: this process, and the whole machine (contention check)              */
/* ------------------------------------------------------------------------ */

/* User + system CPU time of this process, seconds. */
static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* System (kernel) CPU time of this process, seconds: SQLite's file writes. */
static double sys_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* Whole-machine CPU counters from /proc/stat (all CPUs, jiffies). */
typedef struct {
    unsigned long long busy, total;
    double self_cpu;   /* cpu_s() at the same moment */
    int64_t wall;      /* now_ns() */
} machine_cpu_t;

static machine_cpu_t machine_cpu(void) {
    machine_cpu_t m = {0, 0, cpu_s(), now_ns()};
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return m;
    unsigned long long v[10] = {0};
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
               &v[7], &v[8], &v[9]) >= 4) {
        for (int i = 0; i < 8; i++) m.total += v[i]; /* guest time is already in user */
        m.busy = m.total - v[3] - v[4];              /* minus idle and iowait */
    }
    fclose(f);
    return m;
}

/* Prints how busy the machine was between two snapshots, and how much of
 * that was this process: other load on the CPUs inflates wall times. */
static void print_contention(const char *what, machine_cpu_t a, machine_cpu_t b) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double wall = (b.wall - a.wall) / 1e9;
    if (b.total <= a.total || wall <= 0) return;
    double busy = (double)(b.busy - a.busy) / (double)(b.total - a.total) * ncpu; /* CPUs busy on average */
    double self = (b.self_cpu - a.self_cpu) / wall;                              /* CPUs used by this process */
    double others = busy - self;
    if (others < 0) others = 0;
    double load[3] = {0, 0, 0};
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
        fclose(f);
    }
    printf("  cpu during %s: machine %.2f of %ld CPUs busy, this process %.2f, other processes %.2f%s; loadavg %.2f\n", what,
           busy, ncpu, self, others, others > 0.3 ? " (CONTENDED: wall times inflated)" : "", load[0]);
}

/* ------------------------------------------------------------------------ */
/* Machine and library                                                      */
/* ------------------------------------------------------------------------ */

static int loaded_lib_path(char *out, size_t n) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return 0;
    char line[PATH_MAX + 256];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = strchr(line, '/');
        if (p && strstr(p, "libfieldsync")) {
            p[strcspn(p, "\n")] = 0;
            snprintf(out, n, "%s", p);
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

static void print_machine(const char *dir) {
    char model[256] = "?", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "model name", 10)) {
                char *p = strchr(line, ':');
                if (p) {
                    p++;
                    while (*p == ' ') p++;
                    p[strcspn(p, "\n")] = 0;
                    snprintf(model, sizeof model, "%s", p);
                }
                break;
            }
        fclose(f);
    }
    struct utsname u;
    uname(&u);
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %Z", localtime(&now));
    long mem_kib = 0;
    f = fopen("/proc/meminfo", "r");
    if (f) {
        if (fgets(line, sizeof line, f)) sscanf(line, "MemTotal: %ld", &mem_kib);
        fclose(f);
    }
    printf("machine: nproc %ld, CPU %s, RAM %.1f GiB, %s %s %s\n", sysconf(_SC_NPROCESSORS_ONLN), model,
           mem_kib / 1048576.0, u.sysname, u.release, u.machine);
    printf("date:    %s\n", date);
    printf("libfieldsync %s (ABI %d), SQLite %s, jansson %s\n", fs_version(), (int)fs_abi_version(),
           sqlite3_libversion(), JANSSON_VERSION);
    if (dir) printf("files:   %s (%s)\n", dir, fs_type_name(dir));
    char path[PATH_MAX], real[PATH_MAX];
    if (loaded_lib_path(path, sizeof path)) {
        if (!realpath(path, real)) snprintf(real, sizeof real, "%s", path);
        struct stat st;
        char mt[64] = "?";
        if (stat(real, &st) == 0) strftime(mt, sizeof mt, "%Y-%m-%d %H:%M:%S %Z", localtime(&st.st_mtime));
        char cmd[PATH_MAX + 64], sum[80] = "?";
        snprintf(cmd, sizeof cmd, "sha256sum '%s' 2>/dev/null", real);
        FILE *p = popen(cmd, "r");
        if (p) {
            if (fscanf(p, "%64s", sum) != 1) snprintf(sum, sizeof sum, "?");
            pclose(p);
        }
        printf("library: %s (%lld bytes, modified %s, sha256 %.12s...)\n", real, file_size(real), mt, sum);
    }
}

/* ------------------------------------------------------------------------ */
/* fieldsync helpers                                                        */
/* ------------------------------------------------------------------------ */

static fs_store *bench_store_open(const char *path, const char *extra_opts) {
    char opts[512];
    snprintf(opts, sizeof opts, "{\"durability\":\"normal\",\"device_id\":\"" BENCH_DEVICE_ID "\"%s%s}",
             extra_opts && *extra_opts ? "," : "", extra_opts ? extra_opts : "");
    fs_store *st = NULL;
    fs_status rc = fs_store_open(path, BENCH_SCHEMA, opts, &st);
    if (rc != FS_OK) die("fs_store_open(%s): %s: %s", path, fs_status_name(rc), fs_last_error());
    return st;
}

static fs_hub *bench_hub_open(const char *path) {
    fs_hub *h = NULL;
    fs_status rc = fs_hub_open(path, BENCH_SCHEMA, "{\"durability\":\"normal\"}", &h);
    if (rc != FS_OK) die("fs_hub_open(%s): %s: %s", path, fs_status_name(rc), fs_last_error());
    return h;
}

static void bench_store_close(fs_store *st) {
    fs_status rc = fs_store_close(st);
    if (rc != FS_OK) die("fs_store_close: %s: %s", fs_status_name(rc), fs_last_error());
}

static void bench_hub_close(fs_hub *h) {
    fs_status rc = fs_hub_close(h);
    if (rc != FS_OK) die("fs_hub_close: %s: %s", fs_status_name(rc), fs_last_error());
}

/* Applies n generated actions (the backlog), offline. Returns seconds.
 * progress_every > 0 prints a line every that many actions. */
static double bench_build_backlog(fs_store *st, bench_gen_t *g, long first_index, long n, long progress_every) {
    char buf[512];
    int64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        bench_action_t a = gen_next(g);
        bench_action_json(buf, sizeof buf, &a, first_index + i);
        char *res = NULL;
        fs_status rc = fs_store_apply(st, buf, &res);
        if (rc != FS_OK) die("fs_store_apply: %s: %s\n  action: %s", fs_status_name(rc), fs_last_error(), buf);
        fs_free(res);
        if (progress_every > 0 && (i + 1) % progress_every == 0)
            printf("  ... %ld actions applied (%.1f s)\n", i + 1, (now_ns() - t0) / 1e9);
    }
    return (now_ns() - t0) / 1e9;
}

static int64_t bench_outbox_count(fs_store *st) {
    int64_t c = -1;
    fs_status rc = fs_outbox_count(st, &c);
    if (rc != FS_OK) die("fs_outbox_count: %s: %s", fs_status_name(rc), fs_last_error());
    return c;
}

/* An integer member of a flat JSON object (jansson), or dflt. */
static long long json_int_member(const char *text, const char *key, long long dflt) {
    json_error_t err;
    json_t *o = json_loads(text, 0, &err);
    if (!o) return dflt;
    json_t *v = json_object_get(o, key);
    long long r = v && json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
    json_decref(o);
    return r;
}

/* ------------------------------------------------------------------------ */
/* The drain loop                                                           */
/* ------------------------------------------------------------------------ */

/* One exchange: prepare -> handle -> receive. */
typedef struct {
    int64_t prepare_ns, handle_ns, receive_ns;
    long req_bytes, resp_bytes;
    long entries;       /* summary: applied + duplicate + rejected + retry */
    long outbox_after;  /* summary "outbox" */
} bench_exchange_t;

typedef struct {
    long exchanges;
    long applied, duplicate, rejected, retry, stuck, pulled;
    long long req_bytes, resp_bytes;
    int64_t wall_ns;          /* whole loop, including frees and summary parsing */
    double cpu_s;             /* CPU time of this process during the loop */
    long no_request;          /* prepare returned no request while entries were pending */
    int stopped_early;        /* max_seconds reached */
    int64_t outbox_left;
} bench_drain_t;

typedef void (*bench_exchange_cb)(const bench_exchange_t *x, void *ctx);

/* Drains the outbox through the hub until it is empty (or max_seconds > 0 has
 * passed). Each step is timed alone; `log` (may be NULL) receives up to
 * log_cap exchanges; `cb` (may be NULL) is called after each exchange. */
static bench_drain_t bench_drain(fs_store *st, fs_hub *hub, bench_exchange_t *log, long log_cap,
                                 bench_exchange_cb cb, void *ctx, double max_seconds) {
    bench_drain_t d;
    memset(&d, 0, sizeof d);
    int64_t start = now_ns();
    double cpu0 = cpu_s();
    int64_t pending = bench_outbox_count(st);
    long idle = 0;
    while (pending > 0) {
        if (max_seconds > 0 && (now_ns() - start) / 1e9 > max_seconds) {
            d.stopped_early = 1;
            break;
        }
        bench_exchange_t x;
        memset(&x, 0, sizeof x);
        char *req = NULL, *resp = NULL, *sum = NULL;
        int64_t wait = 0;
        int64_t t0 = now_ns();
        fs_status rc = fs_sync_prepare(st, &req, &wait);
        int64_t t1 = now_ns();
        if (rc != FS_OK) die("fs_sync_prepare: %s: %s", fs_status_name(rc), fs_last_error());
        if (!req) {
            /* Not expected in these benchmarks: every entry is due. */
            d.no_request++;
            if (d.no_request > 20) die("fs_sync_prepare gave no request %ld times with %lld entries pending (wait %lld ms)",
                                       d.no_request, (long long)pending, (long long)wait);
            fprintf(stderr, "%s: warning: prepare returned no request, wait %lld ms, %lld pending\n", g_prog,
                    (long long)wait, (long long)pending);
            if (wait > 0) usleep((useconds_t)(wait > 2000 ? 2000000 : wait * 1000));
            continue;
        }
        rc = fs_hub_handle(hub, req, &resp);
        int64_t t2 = now_ns();
        if (rc != FS_OK) die("fs_hub_handle: %s: %s", fs_status_name(rc), fs_last_error());
        rc = fs_sync_receive(st, resp, &sum);
        int64_t t3 = now_ns();
        if (rc != FS_OK) die("fs_sync_receive: %s: %s", fs_status_name(rc), fs_last_error());
        x.prepare_ns = t1 - t0;
        x.handle_ns = t2 - t1;
        x.receive_ns = t3 - t2;
        x.req_bytes = (long)strlen(req);
        x.resp_bytes = (long)strlen(resp);
        json_error_t err;
        json_t *o = json_loads(sum, 0, &err);
        if (!o) die("summary is not JSON: %s", sum);
        long a = (long)json_integer_value(json_object_get(o, "applied"));
        long du = (long)json_integer_value(json_object_get(o, "duplicate"));
        long rj = (long)json_integer_value(json_object_get(o, "rejected"));
        long rt = (long)json_integer_value(json_object_get(o, "retry"));
        d.applied += a;
        d.duplicate += du;
        d.rejected += rj;
        d.retry += rt;
        d.stuck += (long)json_integer_value(json_object_get(o, "stuck"));
        d.pulled += (long)json_integer_value(json_object_get(o, "pulled"));
        json_t *ob = json_object_get(o, "outbox");
        pending = ob && json_is_integer(ob) ? (int64_t)json_integer_value(ob) : bench_outbox_count(st);
        json_decref(o);
        x.entries = a + du + rj + rt;
        x.outbox_after = (long)pending;
        d.req_bytes += x.req_bytes;
        d.resp_bytes += x.resp_bytes;
        fs_free(req);
        fs_free(resp);
        fs_free(sum);
        if (log && d.exchanges < log_cap) log[d.exchanges] = x;
        d.exchanges++;
        if (cb) cb(&x, ctx);
        idle = x.entries == 0 ? idle + 1 : 0;
        if (idle > 100) die("no progress: %lld entries pending, 100 exchanges without results", (long long)pending);
    }
    d.wall_ns = now_ns() - start;
    d.cpu_s = cpu_s() - cpu0;
    d.outbox_left = pending;
    return d;
}

#endif /* FIELDSYNC_BENCH_COMMON_H */
