/* harness.h — what every benchmark shares: options, the machine and library
 * it ran on, timing, percentiles, contention, memory, files, raw-SQLite
 * baselines run beside fieldsync, and the verdict lines. Also the task
 * workload (schema, generator, in-process drain) that the apply and sync
 * programs share, so each program holds only its own workload. */
#ifndef FIELDSYNC_BENCH_HARNESS_H
#define FIELDSYNC_BENCH_HARNESS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "fieldsync.h"

/* Run: options, then h_begin (work directory, header), then h_end. */
typedef struct {
    const char *name; /* "--records", or NULL for the next positional argument */
    char kind;        /* 'l' long, 'i' int, 'd' double, 's' string, 'f' flag */
    void *value;
} h_opt;
extern const char *h_dir_opt; /* --dir (every program) */
extern int h_keep;            /* --keep */
void h_args(int argc, char **argv, const h_opt *opts, const char *usage);
void h_usage(void) __attribute__((noreturn));
/* Creates the work directory and prints "== title ==", machine, date, library. */
void h_begin(const char *prog, const char *title, char *dir, size_t n);
/* Removes the work directory (unless --keep), prints peak RSS and CPU, and
 * how many targets were met. Returns 0, or 1 when a check failed. */
int h_end(const char *dir);
void h_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* A check of the workload itself (not a target): prints WARNING, fails the run. */
void h_expect(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Time. */
int64_t h_now_ns(void);        /* CLOCK_MONOTONIC */
int64_t h_wall_ms(void);       /* CLOCK_REALTIME */
int64_t h_thread_ns(void);     /* this thread's CPU time: not inflated when descheduled */
double h_cpu_s(void);          /* user + system of this process */
double h_sys_s(void);

/* Nearest-rank percentiles of durations in ns, in `unit` ns (1e3: µs, 1e6: ms). */
typedef struct { double p50, p99, max, mean, sum; long n; } h_stats;
h_stats h_pct(const int64_t *ns, long n, double unit);
double h_median(double *v, int n); /* sorts v */

/* The machine's other load between two snapshots (a shared VM drifts). */
typedef struct { unsigned long long busy, total; double self; int64_t wall; } h_load;
h_load h_load_now(void);
double h_others(h_load a, h_load b); /* CPUs busy with other processes */
void h_contention(const char *what, h_load a, h_load b);

/* Memory, KiB. */
long h_status_kib(const char *key); /* "VmRSS", "VmHWM" of /proc/self/status */
long h_rss_kib(void);               /* cheap: /proc/self/statm */
long h_maxrss_kib(void);
int h_reset_peak(void);             /* VmHWM (and ru_maxrss) restart from now */

/* Files. */
void h_path(char *out, const char *dir, const char *name); /* out: PATH_MAX + 64 */
void h_copy_file(const char *src, const char *dst);
void h_copy_db(const char *src, const char *dst);           /* with its -wal */
void h_remove_db(const char *path);
long long h_file_size(const char *path);
long long h_db_size(const char *path);                      /* .db + -wal */

/* Verdicts: "target: <what> <op> <limit><unit>: MET (<value><unit>)". */
int h_target(const char *what, double value, const char *op, double limit, const char *unit);

/* Baseline pairing: the two sides walk the same n items in alternating
 * chunks, so that the VM's drift hits both alike; chunk 0 runs all of `a`,
 * then all of `b`. */
typedef void (*h_range_fn)(void *ctx, long from, long to);
void h_interleave(long n, long chunk, h_range_fn a, void *actx, h_range_fn b, void *bctx);

/* Raw SQLite for the baselines. */
sqlite3 *h_sql_open(const char *path, const char *synchronous);
void h_exec(sqlite3 *db, const char *sql);
sqlite3_stmt *h_prep(sqlite3 *db, const char *sql);
void h_step(sqlite3_stmt *s); /* step to the end and reset */
double h_sql_num(sqlite3 *db, const char *sql); /* first column of the first row, or -1 */
/* A fresh file with the DDL (page size, auto-vacuum, tables, indexes) of another. */
void h_clone_schema(const char *src, const char *dst);

/* fieldsync. */
void h_ok(fs_status rc, const char *what); /* dies with fs_last_error() unless FS_OK */
/* Enrolls the store's device at the hub and pins the hub's key, once per pair;
 * nothing with a build from before authentication. */
void h_enroll(fs_store *st, fs_hub *hub);
fs_store *h_store(const char *path, const char *schema, const char *opts);
fs_hub *h_hub(const char *path, const char *schema, const char *opts);
void h_apply(fs_store *st, const char *action);
void h_store_close(fs_store *st);
void h_hub_close(fs_hub *h);
int64_t h_outbox(fs_store *st);
long long h_json_int(const char *json, const char *key, long long dflt);
long long h_store_stat(fs_store *st, const char *key);
long long h_hub_stat(fs_hub *h, const char *key);

/* The task workload of the apply and sync programs. */
extern const char *TASK_SCHEMA;
#define TASK_DEVICE "bench-dev-1"
#define TASK_OPTS "{\"durability\":\"normal\",\"device_id\":\"" TASK_DEVICE "\"}"
enum { N_STATUS = 5, N_TAGS = 16, N_SITES = 40, N_ACTORS = 40 };
extern const char *STATUSES[N_STATUS];
/* A record's first action creates it (lww set status + site); later ones are
 * a counter inc, an lww set or a set add; A_UPDATE (set + inc) is the apply
 * benchmark's. */
enum { A_CREATE, A_INC, A_SET, A_ADD, A_UPDATE, A_KINDS };
typedef struct { uint8_t kind, arg, actor; int32_t rec; } task_action;
typedef struct { uint64_t s; } h_rng;
uint64_t h_rand(h_rng *r); /* xorshift64* */
/* Streaming, so that a million-action backlog is never held in memory. */
typedef struct { h_rng rng; long n_records; uint8_t *created; long counts[A_KINDS]; } task_gen;
void task_gen_init(task_gen *g, long n_records, uint64_t seed);
task_action task_next(task_gen *g);
void task_json(char *buf, size_t n, const task_action *a, long i); /* i: action index (input) */
void task_input(char *buf, size_t n, long i);
/* Applies n generated actions offline and prints the mix; returns seconds. */
double task_backlog(fs_store *st, task_gen *g, long n, long progress_every);
fs_store *task_store(const char *path, const char *extra_opts);
fs_hub *task_hub(const char *path);

/* The in-process drain: fs_sync_prepare -> fs_hub_handle -> fs_sync_receive
 * until the outbox is empty (or max_s > 0 has passed), each call timed. */
typedef struct { int64_t prepare_ns, handle_ns, receive_ns; long req_bytes, resp_bytes, entries, outbox_after; } h_exchange;
typedef struct {
    long exchanges, applied, duplicate, rejected, retry, stuck, pulled, no_request;
    long long req_bytes, resp_bytes;
    int64_t wall_ns;
    double cpu_s;
    int stopped_early;
    h_exchange *log; /* every exchange, when asked for (free it) */
} h_drain_t;
h_drain_t h_drain(fs_store *st, fs_hub *hub, int keep_log, void (*each)(const h_exchange *, void *), void *ctx, double max_s);

#endif
