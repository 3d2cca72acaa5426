/* harness.c — see harness.h. */
#include "harness.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>

const char *h_dir_opt = NULL;
int h_keep = 0;
static const char *g_prog = "bench", *g_usage = "";
static int g_met, g_unmet, g_failed;

/* ---- run ---------------------------------------------------------------- */

void h_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fprintf(stderr, "%s: ", g_prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

void h_expect(int ok, const char *fmt, ...) {
    if (ok) return;
    va_list ap;
    va_start(ap, fmt);
    printf("  WARNING: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    g_failed = 1;
}

void h_usage(void) {
    fprintf(stderr, "usage: %s %s [--dir DIR] [--keep]\n", g_prog, g_usage);
    exit(2);
}

void h_args(int argc, char **argv, const h_opt *opts, const char *usage) {
    const char *slash = strrchr(argv[0], '/');
    g_prog = slash ? slash + 1 : argv[0];
    g_usage = usage;
    int positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        const h_opt *o = NULL;
        if (!strcmp(a, "--keep")) { h_keep = 1; continue; }
        if (!strcmp(a, "--dir") && i + 1 < argc) { h_dir_opt = argv[++i]; continue; }
        if (a[0] == '-' && a[1] == '-') {
            for (const h_opt *p = opts; p->kind; p++)
                if (p->name && !strcmp(p->name, a)) o = p;
            if (!o) h_usage();
            if (o->kind == 'f') { *(int *)o->value = 1; continue; }
            if (i + 1 >= argc) h_usage();
            v = argv[++i];
        } else {
            int k = 0;
            for (const h_opt *p = opts; p->kind && !o; p++)
                if (!p->name && k++ == positional) o = p;
            if (!o) h_usage();
            positional++;
            v = a;
        }
        char *end = NULL;
        errno = 0;
        switch (o->kind) {
        case 'l': *(long *)o->value = strtol(v, &end, 10); break;
        case 'i': *(int *)o->value = (int)strtol(v, &end, 10); break;
        case 'd': *(double *)o->value = strtod(v, &end); break;
        default: *(const char **)o->value = v; continue;
        }
        if (errno || end == v || *end) h_usage();
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
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
    default: return "other";
    }
}

static void first_line_of(const char *cmd, char *out, size_t n) {
    FILE *p = popen(cmd, "r");
    out[0] = 0;
    if (!p) return;
    if (!fgets(out, (int)n, p)) out[0] = 0;
    out[strcspn(out, "\n")] = 0;
    pclose(p);
}

/* The library this process really loaded (LD_LIBRARY_PATH may point
 * elsewhere than the RUNPATH), its size stripped and not, and its hash: the
 * line that tells two builds' outputs apart. */
static void print_library(const char *dir) {
    char line[PATH_MAX + 256], real[PATH_MAX] = "", cmd[3 * PATH_MAX], sum[80], tmp[PATH_MAX + 64];
    FILE *f = fopen("/proc/self/maps", "r");
    while (f && fgets(line, sizeof line, f)) {
        char *p = strchr(line, '/');
        if (p && strstr(p, "libfieldsync")) {
            p[strcspn(p, "\n")] = 0;
            if (!realpath(p, real)) snprintf(real, sizeof real, "%s", p);
            break;
        }
    }
    if (f) fclose(f);
    if (!real[0]) return;
    h_path(tmp, dir, "stripped.so");
    snprintf(cmd, sizeof cmd, "sha256sum '%s' | cut -c1-12; strip --strip-unneeded -o '%s' '%s' 2>/dev/null", real, tmp, real);
    first_line_of(cmd, sum, sizeof sum);
    struct stat st;
    char mt[64] = "?";
    if (stat(real, &st) == 0) strftime(mt, sizeof mt, "%Y-%m-%d %H:%M:%S %Z", localtime(&st.st_mtime));
    printf("library: %s (%.2f MiB, stripped %.2f MiB, modified %s, sha256 %s...)\n", real, h_file_size(real) / 1048576.0,
           h_file_size(tmp) / 1048576.0, mt, sum);
    unlink(tmp);
}

void h_begin(const char *prog, const char *title, char *dir, size_t n) {
    if (h_dir_opt) {
        snprintf(dir, n, "%s", h_dir_opt);
        mkdir(dir, 0700);
    } else {
        const char *t = getenv("TMPDIR");
        snprintf(dir, n, "%s/fieldsync-%s-XXXXXX", t && *t ? t : "/var/tmp", prog);
        if (!mkdtemp(dir)) h_die("mkdtemp %s: %s", dir, strerror(errno));
    }
    char model[256] = "?", mem[64] = "0", date[64];
    first_line_of("sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1", model, sizeof model);
    first_line_of("sed -n 's/^MemTotal: *\\([0-9]*\\).*/\\1/p' /proc/meminfo", mem, sizeof mem);
    struct utsname u;
    uname(&u);
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    printf("== %s (Benchmarks/%s.c) ==\n", title, prog);
    printf("machine: nproc %ld, CPU %s, RAM %.1f GiB, %s %s %s\n", sysconf(_SC_NPROCESSORS_ONLN), model,
           atol(mem) / 1048576.0, u.sysname, u.release, u.machine);
    printf("date:    %s\n", date);
    printf("libfieldsync %s (ABI %d), SQLite %s, jansson %s\n", fs_version(), (int)fs_abi_version(), sqlite3_libversion(),
           JANSSON_VERSION);
    printf("files:   %s (%s)\n", dir, fs_type_name(dir));
    print_library(dir);
}

int h_end(const char *dir) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("process: peak RSS %.1f MiB, CPU user %.2f s + system %.2f s\n", ru.ru_maxrss / 1024.0,
           ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6, ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    if (g_met + g_unmet) printf("targets: %d met, %d not met\n", g_met, g_unmet);
    if (h_keep) printf("files kept in %s\n", dir);
    else if (!h_dir_opt) rmdir(dir);
    return g_failed;
}

/* ---- time and statistics ----------------------------------------------- */

static int64_t clock_ns(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
int64_t h_now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
int64_t h_wall_ms(void) { return clock_ns(CLOCK_REALTIME) / 1000000; }
int64_t h_thread_ns(void) { return clock_ns(CLOCK_THREAD_CPUTIME_ID); }

double h_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

double h_sys_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

h_stats h_pct(const int64_t *ns, long n, double unit) {
    h_stats s = {0, 0, 0, 0, 0, n};
    if (n <= 0) return s;
    int64_t *v = malloc(sizeof *v * (size_t)n);
    if (!v) h_die("out of memory");
    memcpy(v, ns, sizeof *v * (size_t)n);
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    long i50 = (n * 50 + 99) / 100 - 1, i99 = (n * 99 + 99) / 100 - 1;
    for (long i = 0; i < n; i++) s.sum += (double)v[i];
    s.p50 = v[i50] / unit;
    s.p99 = v[i99] / unit;
    s.max = v[n - 1] / unit;
    s.sum /= unit;
    s.mean = s.sum / n;
    free(v);
    return s;
}

double h_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- contention --------------------------------------------------------- */

h_load h_load_now(void) {
    h_load m = {0, 0, h_cpu_s(), h_now_ns()};
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (f && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                    &v[7]) >= 4) {
        for (int i = 0; i < 8; i++) m.total += v[i];
        m.busy = m.total - v[3] - v[4]; /* minus idle and iowait */
    }
    if (f) fclose(f);
    return m;
}

double h_others(h_load a, h_load b) {
    double wall = (b.wall - a.wall) / 1e9;
    if (b.total <= a.total || wall <= 0) return -1;
    double busy = (double)(b.busy - a.busy) / (double)(b.total - a.total) * sysconf(_SC_NPROCESSORS_ONLN);
    double o = busy - (b.self - a.self) / wall;
    return o < 0 ? 0 : o;
}

void h_contention(const char *what, h_load a, h_load b) {
    double o = h_others(a, b), wall = (b.wall - a.wall) / 1e9;
    if (o < 0) return;
    printf("  cpu during %s: this process %.2f CPUs, other processes %.2f of %ld%s\n", what, (b.self - a.self) / wall, o,
           sysconf(_SC_NPROCESSORS_ONLN), o > 0.3 ? " (CONTENDED: wall times inflated)" : "");
}

/* ---- memory ------------------------------------------------------------- */

long h_status_kib(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t k = strlen(key);
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, k) && line[k] == ':') {
            v = atol(line + k + 1);
            break;
        }
    if (f) fclose(f);
    return v;
}

long h_rss_kib(void) {
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (fd >= 0) close(fd);
    long size = 0, resident = -1;
    if (n > 0) {
        buf[n] = 0;
        sscanf(buf, "%ld %ld", &size, &resident);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

long h_maxrss_kib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

int h_reset_peak(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return 0;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

/* ---- files -------------------------------------------------------------- */

void h_path(char *out, const char *dir, const char *name) { snprintf(out, PATH_MAX + 64, "%s/%s", dir, name); }

void h_copy_file(const char *src, const char *dst) {
    static char buf[1 << 20];
    FILE *in = fopen(src, "rb"), *out = in ? fopen(dst, "wb") : NULL;
    if (!in || !out) h_die("copy %s to %s: %s", src, dst, strerror(errno));
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) h_die("write %s: %s", dst, strerror(errno));
    fclose(in);
    if (fflush(out) != 0 || fsync(fileno(out)) != 0) h_die("flush %s", dst);
    fclose(out);
}

void h_remove_db(const char *p) {
    char s[PATH_MAX + 64];
    static const char *ext[] = {"", "-wal", "-shm", "-journal"};
    for (int i = 0; i < 4; i++) {
        snprintf(s, sizeof s, "%s%s", p, ext[i]);
        unlink(s);
    }
}

void h_copy_db(const char *src, const char *dst) {
    char s[PATH_MAX + 64], d[PATH_MAX + 64];
    h_remove_db(dst);
    h_copy_file(src, dst);
    snprintf(s, sizeof s, "%s-wal", src);
    snprintf(d, sizeof d, "%s-wal", dst);
    if (access(s, F_OK) == 0) h_copy_file(s, d);
}

long long h_file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

long long h_db_size(const char *p) {
    char s[PATH_MAX + 64];
    snprintf(s, sizeof s, "%s-wal", p);
    long long a = h_file_size(p), b = h_file_size(s);
    return (a > 0 ? a : 0) + (b > 0 ? b : 0);
}

/* ---- verdicts and pairing ----------------------------------------------- */

int h_target(const char *what, double value, const char *op, double limit, const char *unit) {
    int met = !strcmp(op, "<") ? value < limit : value <= limit;
    met ? g_met++ : g_unmet++;
    printf("target: %s %s %g%s: %s (%.2f%s)\n", what, op, limit, unit, met ? "MET" : "NOT MET", value, unit);
    return met;
}

void h_interleave(long n, long chunk, h_range_fn a, void *actx, h_range_fn b, void *bctx) {
    if (chunk <= 0) chunk = n;
    for (long from = 0; from < n; from += chunk) {
        long to = n - from > chunk ? from + chunk : n;
        a(actx, from, to);
        if (chunk < n) b(bctx, from, to);
    }
    if (chunk >= n) b(bctx, 0, n);
}

/* ---- SQLite ------------------------------------------------------------- */

void h_exec(sqlite3 *db, const char *sql) {
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) h_die("sqlite: %s\n  in: %s", err, sql);
}

sqlite3 *h_sql_open(const char *path, const char *synchronous) {
    sqlite3 *db;
    char q[64];
    if (sqlite3_open(path, &db) != SQLITE_OK) h_die("open %s", path);
    h_exec(db, "PRAGMA journal_mode=WAL");
    snprintf(q, sizeof q, "PRAGMA synchronous=%s", synchronous);
    h_exec(db, q);
    return db;
}

sqlite3_stmt *h_prep(sqlite3 *db, const char *sql) {
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) != SQLITE_OK)
        h_die("prepare: %s\n  in: %s", sqlite3_errmsg(db), sql);
    return s;
}

void h_step(sqlite3_stmt *s) {
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {}
    if (rc != SQLITE_DONE) h_die("step: %s\n  in: %s", sqlite3_errmsg(sqlite3_db_handle(s)), sqlite3_sql(s));
    sqlite3_reset(s);
}

double h_sql_num(sqlite3 *db, const char *sql) {
    sqlite3_stmt *s;
    double v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_double(s, 0);
    sqlite3_finalize(s);
    return v;
}

void h_clone_schema(const char *src_path, const char *dst_path) {
    sqlite3 *src, *db;
    sqlite3_stmt *s;
    char q[128];
    if (sqlite3_open_v2(src_path, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) h_die("open %s", src_path);
    h_remove_db(dst_path);
    if (sqlite3_open(dst_path, &db) != SQLITE_OK) h_die("open %s", dst_path);
    snprintf(q, sizeof q, "PRAGMA page_size=%d", (int)h_sql_num(src, "PRAGMA page_size"));
    h_exec(db, q);
    snprintf(q, sizeof q, "PRAGMA auto_vacuum=%d", (int)h_sql_num(src, "PRAGMA auto_vacuum"));
    h_exec(db, q);
    h_exec(db, "PRAGMA journal_mode=WAL");
    sqlite3_prepare_v2(src, "SELECT sql FROM sqlite_master WHERE sql NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                            "ORDER BY type <> 'table', rowid", -1, &s, NULL);
    h_exec(db, "BEGIN");
    while (sqlite3_step(s) == SQLITE_ROW) h_exec(db, (const char *)sqlite3_column_text(s, 0));
    h_exec(db, "COMMIT");
    sqlite3_finalize(s);
    sqlite3_close(db);
    sqlite3_close(src);
}

/* ---- fieldsync ---------------------------------------------------------- */

void h_ok(fs_status rc, const char *what) {
    if (rc != FS_OK) h_die("%s: %s: %s", what, fs_status_name(rc), fs_last_error());
}

fs_store *h_store(const char *path, const char *schema, const char *opts) {
    fs_store *st = NULL;
    h_ok(fs_store_open(path, schema, opts, &st), path);
    return st;
}

fs_hub *h_hub(const char *path, const char *schema, const char *opts) {
    fs_hub *h = NULL;
    h_ok(fs_hub_open(path, schema, opts, &h), path);
    return h;
}

/* Builds from before authentication (compare OLD=...) have no enrollment:
 * the calls are looked up at run time, so one benchmark binary measures both. */
typedef fs_status (*enroll_fn)(fs_hub *, const char *, char **);
typedef fs_status (*pin_fn)(fs_store *, const char *);

void h_enroll(fs_store *st, fs_hub *hub) {
    static struct { fs_store *st; fs_hub *hub; } done[64];
    static int n;
    enroll_fn enroll = (enroll_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "fs_hub_enroll");
    pin_fn pin = (pin_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "fs_store_pin_hub");
    if (!enroll || !pin) return;
    for (int i = 0; i < n; i++)
        if (done[i].st == st && done[i].hub == hub) return;
    char *s = NULL, *res = NULL, enrollment[512];
    h_ok(fs_store_stats(st, &s), "fs_store_stats");
    json_t *o = json_loads(s, 0, NULL);
    fs_free(s);
    if (!o) h_die("fs_store_stats: not JSON");
    snprintf(enrollment, sizeof enrollment, "{\"device_id\":\"%s\",\"public_key\":\"%s\",\"instance\":\"%s\"}",
             json_string_value(json_object_get(o, "device_id")), json_string_value(json_object_get(o, "public_key")),
             json_string_value(json_object_get(o, "instance_id")));
    json_decref(o);
    h_ok(enroll(hub, enrollment, &res), "fs_hub_enroll");
    o = json_loads(res, 0, NULL);
    fs_free(res);
    h_ok(pin(st, json_string_value(json_object_get(o, "hub_key"))), "fs_store_pin_hub");
    json_decref(o);
    if (n < 64) {
        done[n].st = st;
        done[n].hub = hub;
        n++;
    }
}

void h_apply(fs_store *st, const char *action) {
    char *res = NULL;
    fs_status rc = fs_store_apply(st, action, &res);
    if (rc != FS_OK) h_die("fs_store_apply: %s: %s\n  action: %s", fs_status_name(rc), fs_last_error(), action);
    fs_free(res);
}

void h_store_close(fs_store *st) { h_ok(fs_store_close(st), "fs_store_close"); }
void h_hub_close(fs_hub *h) { h_ok(fs_hub_close(h), "fs_hub_close"); }

int64_t h_outbox(fs_store *st) {
    int64_t c = -1;
    h_ok(fs_outbox_count(st, &c), "fs_outbox_count");
    return c;
}

long long h_json_int(const char *text, const char *key, long long dflt) {
    json_error_t err;
    json_t *o = text ? json_loads(text, 0, &err) : NULL;
    json_t *v = o ? json_object_get(o, key) : NULL;
    long long r = v && json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
    json_decref(o);
    return r;
}

long long h_store_stat(fs_store *st, const char *key) {
    char *s = NULL;
    h_ok(fs_store_stats(st, &s), "fs_store_stats");
    long long v = h_json_int(s, key, -1);
    fs_free(s);
    return v;
}

long long h_hub_stat(fs_hub *h, const char *key) {
    char *s = NULL;
    h_ok(fs_hub_stats(h, &s), "fs_hub_stats");
    long long v = h_json_int(s, key, -1);
    fs_free(s);
    return v;
}

/* ---- the task workload -------------------------------------------------- */

const char *TASK_SCHEMA = "{\"version\":1,\"types\":{\"task\":{\"fields\":{"
                          "\"status\":{\"type\":\"string\"},\"site\":{\"type\":\"string\"},"
                          "\"picked\":{\"type\":\"int\",\"merge\":\"counter\"},\"tags\":{\"type\":\"set\"}},"
                          "\"required\":[\"status\"]}}}";
const char *STATUSES[N_STATUS] = {"open", "picked", "staged", "shipped", "blocked"};
static const char *KIND_NAMES[A_KINDS] = {"create (lww set status+site)", "counter inc picked", "lww set status",
                                          "set add tags", "set status + inc picked"};

uint64_t h_rand(h_rng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

void task_gen_init(task_gen *g, long n_records, uint64_t seed) {
    memset(g, 0, sizeof *g);
    g->rng.s = seed;
    g->n_records = n_records;
    g->created = calloc((size_t)n_records, 1);
    if (!g->created) h_die("out of memory");
}

task_action task_next(task_gen *g) {
    task_action a;
    a.rec = (int32_t)(h_rand(&g->rng) % (uint64_t)g->n_records);
    a.actor = (uint8_t)(h_rand(&g->rng) % N_ACTORS);
    uint64_t r = h_rand(&g->rng);
    if (!g->created[a.rec]) {
        g->created[a.rec] = 1;
        a.kind = A_CREATE;
        a.arg = (uint8_t)(r % N_SITES);
    } else {
        a.kind = (uint8_t)(1 + r % 3);
        a.arg = (uint8_t)((r >> 8) % (a.kind == A_SET ? N_STATUS : N_TAGS));
    }
    g->counts[a.kind]++;
    return a;
}

void task_input(char *buf, size_t n, long i) {
    snprintf(buf, n, "{\"scanner\":\"sc-%02ld\",\"bin\":\"B-%03ld-%02ld\",\"qty\":1}", i % 17, (i * 7) % 1000, i % 50);
}

void task_json(char *buf, size_t n, const task_action *a, long i) {
    static const char *names[A_KINDS] = {"create_task", "pick_item", "set_status", "tag_task", "pick_item"};
    char in[96], ops[128];
    task_input(in, sizeof in, i);
    switch (a->kind) {
    case A_CREATE: snprintf(ops, sizeof ops, "\"set\":{\"status\":\"open\",\"site\":\"site-%02d\"}", a->arg); break;
    case A_INC: snprintf(ops, sizeof ops, "\"inc\":{\"picked\":1}"); break;
    case A_SET: snprintf(ops, sizeof ops, "\"set\":{\"status\":\"%s\"}", STATUSES[a->arg]); break;
    case A_ADD: snprintf(ops, sizeof ops, "\"add\":{\"tags\":[\"tag-%02d\"]}", a->arg); break;
    default: snprintf(ops, sizeof ops, "\"set\":{\"status\":\"%s\"},\"inc\":{\"picked\":1}", STATUSES[a->arg]); break;
    }
    snprintf(buf, n, "{\"action\":\"%s\",\"actor\":\"op-%02d\",\"type\":\"task\",\"id\":\"T-%07d\",%s,\"input\":%s}",
             names[a->kind], a->actor, a->rec, ops, in);
}

double task_backlog(fs_store *st, task_gen *g, long n, long progress_every) {
    char buf[512];
    int64_t t0 = h_now_ns();
    for (long i = 0; i < n; i++) {
        task_action a = task_next(g);
        task_json(buf, sizeof buf, &a, i);
        h_apply(st, buf);
        if (progress_every > 0 && (i + 1) % progress_every == 0)
            printf("  ... %ld actions applied (%.1f s)\n", i + 1, (h_now_ns() - t0) / 1e9);
    }
    printf("action mix:");
    for (int k = 0; k < A_KINDS; k++)
        if (g->counts[k]) printf("%s %ld %s", k ? "," : "", g->counts[k], KIND_NAMES[k]);
    printf("\n");
    return (h_now_ns() - t0) / 1e9;
}

fs_store *task_store(const char *path, const char *extra) {
    char opts[512];
    snprintf(opts, sizeof opts, "{\"durability\":\"normal\",\"device_id\":\"" TASK_DEVICE "\"%s%s}", extra && *extra ? "," : "",
             extra ? extra : "");
    return h_store(path, TASK_SCHEMA, opts);
}

fs_hub *task_hub(const char *path) { return h_hub(path, TASK_SCHEMA, "{\"durability\":\"normal\"}"); }

/* ---- the drain ---------------------------------------------------------- */

static long member(json_t *o, const char *key) { return (long)json_integer_value(json_object_get(o, key)); }

h_drain_t h_drain(fs_store *st, fs_hub *hub, int keep_log, void (*each)(const h_exchange *, void *), void *ctx, double max_s) {
    h_drain_t d;
    memset(&d, 0, sizeof d);
    int64_t start = h_now_ns(), pending = h_outbox(st);
    double cpu0 = h_cpu_s();
    long cap = 0, idle = 0;
    while (pending > 0) {
        if (max_s > 0 && (h_now_ns() - start) / 1e9 > max_s) {
            d.stopped_early = 1;
            break;
        }
        h_exchange x;
        memset(&x, 0, sizeof x);
        char *req = NULL, *resp = NULL, *sum = NULL;
        int64_t wait = 0, t0 = h_now_ns();
        h_enroll(st, hub);
        h_ok(fs_sync_prepare(st, &req, &wait), "fs_sync_prepare");
        int64_t t1 = h_now_ns();
        if (!req) { /* every entry is due in these benchmarks */
            if (++d.no_request > 20) h_die("prepare gave no request %ld times (wait %lld ms)", d.no_request, (long long)wait);
            usleep((useconds_t)(wait > 2000 ? 2000000 : wait * 1000));
            continue;
        }
        h_ok(fs_hub_handle(hub, req, &resp), "fs_hub_handle");
        int64_t t2 = h_now_ns();
        h_ok(fs_sync_receive(st, resp, &sum), "fs_sync_receive");
        x.receive_ns = h_now_ns() - t2;
        x.prepare_ns = t1 - t0;
        x.handle_ns = t2 - t1;
        x.req_bytes = (long)strlen(req);
        x.resp_bytes = (long)strlen(resp);
        json_error_t err;
        json_t *o = json_loads(sum, 0, &err);
        if (!o) h_die("summary is not JSON: %s", sum);
        long a = member(o, "applied"), du = member(o, "duplicate"), rj = member(o, "rejected"), rt = member(o, "retry");
        d.applied += a;
        d.duplicate += du;
        d.rejected += rj;
        d.retry += rt;
        d.stuck += member(o, "stuck");
        d.pulled += member(o, "pulled");
        json_t *ob = json_object_get(o, "outbox");
        pending = json_is_integer(ob) ? (int64_t)json_integer_value(ob) : h_outbox(st);
        json_decref(o);
        x.entries = a + du + rj + rt;
        x.outbox_after = (long)pending;
        d.req_bytes += x.req_bytes;
        d.resp_bytes += x.resp_bytes;
        fs_free(req);
        fs_free(resp);
        fs_free(sum);
        if (keep_log) {
            if (d.exchanges == cap) {
                cap = cap ? cap * 2 : 256;
                d.log = realloc(d.log, sizeof *d.log * (size_t)cap);
                if (!d.log) h_die("out of memory");
            }
            d.log[d.exchanges] = x;
        }
        d.exchanges++;
        if (each) each(&x, ctx);
        idle = x.entries == 0 ? idle + 1 : 0;
        if (idle > 100) h_die("no progress: %lld entries pending after 100 empty exchanges", (long long)pending);
    }
    d.wall_ns = h_now_ns() - start;
    d.cpu_s = h_cpu_s() - cpu0;
    return d;
}
