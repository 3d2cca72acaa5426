/*
 * drain_memory.c — peak memory of libfieldsync while draining a large outbox
 * backlog in-process (BENCHMARKS.md, fourth benchmark; target: < 64 MiB and flat
 * in N).
 *
 * README
 * ------
 * What it measures
 *   drain_memory N   (default N = 100,000; run each N in a fresh process)
 *   1. A forked child builds the backlog: a device store (durability
 *      "normal") receives N fs_store_apply over N/10 records (same mix as
 *      sync_throughput.c), then exits. Building in a child keeps the apply
 *      phase out of this process's peak counters; the child's own peak RSS
 *      (wait4 rusage) is printed for information.
 *   2. This process opens the store and a fresh hub (fs_hub_open, "normal"),
 *      reads its memory "before the drain" — VmRSS and VmHWM from
 *      /proc/self/status, ru_maxrss from getrusage — after resetting VmHWM
 *      (writing 5 to /proc/self/clear_refs, when the kernel allows it), then
 *      drains: fs_sync_prepare -> fs_hub_handle -> fs_sync_receive until the
 *      outbox is empty (default batch size 500, pull on). VmRSS is sampled
 *      after every exchange (/proc/self/statm) and printed at every tenth of
 *      the backlog.
 *   3. "During the drain" = VmHWM and ru_maxrss after the drain (peaks since
 *      the reset); delta = that peak minus VmRSS before the drain. On Linux
 *      getrusage reads the same high-water mark, so the reset applies to
 *      ru_maxrss too; without the reset both would still only hold startup +
 *      opening (the backlog is built in the child). The kernel's RSS counters
 *      are updated lazily, so the three numbers differ by ~0.1-0.3 MiB.
 *   The memory counted is the whole process: libfieldsync's mapped pages
 *   (Swift runtime linked in), libsqlite3/libjansson, SQLite's page caches
 *   (default 2 MiB per connection, two connections), and the C harness (a few
 *   hundred KiB). Request and response strings of one exchange are a few
 *   hundred KiB each.
 *
 * Build and run:  make -C Benchmarks bench            (N = 100,000)
 *                 make -C Benchmarks bench-memory-1m  (N = 1,000,000)
 * Options:        drain_memory [N] [--records N] [--dir D] [--keep]
 *                              [--max-drain-seconds S]
 *   --max-drain-seconds stops the drain after S seconds and reports the
 *   memory measured so far (the run is then marked PARTIAL).
 */
#include "bench_common.h"

#include <sys/wait.h>

static long g_actions = 100000;
static long g_records = 0; /* 0 = N / 10 */
static const char *g_dir_opt = NULL;
static int g_keep = 0;
static double g_max_drain_s = 0;

typedef struct {
    long backlog;
    long drained;
    long next_decile;
    long max_rss;
    int64_t start;
} sampler_t;

static void sample_cb(const bench_exchange_t *x, void *ctx) {
    sampler_t *s = ctx;
    long rss = rss_now_kib();
    if (rss > s->max_rss) s->max_rss = rss;
    s->drained = s->backlog - x->outbox_after;
    while (s->next_decile <= 10 && s->drained * 10 >= s->backlog * s->next_decile) {
        printf("    %3ld%% drained (%8ld actions, %7.1f s): VmRSS %6.1f MiB, max sampled so far %6.1f MiB, VmHWM %6.1f MiB\n",
               s->next_decile * 10, s->drained, (now_ns() - s->start) / 1e9, rss / 1024.0, s->max_rss / 1024.0,
               proc_status_kib("VmHWM") / 1024.0);
        s->next_decile++;
    }
}

static void usage(void) {
    fprintf(stderr, "usage: drain_memory [N] [--records N] [--dir DIR] [--keep] [--max-drain-seconds S]\n");
    exit(2);
}

static void print_mem(const char *when) {
    printf("  %-32s VmRSS %7.1f MiB | VmHWM %7.1f MiB | ru_maxrss %7.1f MiB\n", when, proc_status_kib("VmRSS") / 1024.0,
           proc_status_kib("VmHWM") / 1024.0, maxrss_kib() / 1024.0);
}

int main(int argc, char **argv) {
    g_prog = "drain_memory";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--records") && i + 1 < argc) g_records = atol(argv[++i]);
        else if (!strcmp(a, "--dir") && i + 1 < argc) g_dir_opt = argv[++i];
        else if (!strcmp(a, "--keep")) g_keep = 1;
        else if (!strcmp(a, "--max-drain-seconds") && i + 1 < argc) g_max_drain_s = atof(argv[++i]);
        else if (a[0] >= '0' && a[0] <= '9') g_actions = atol(a);
        else usage();
    }
    if (g_records == 0) g_records = g_actions / 10 > 0 ? g_actions / 10 : 1;
    if (g_actions < 1 || g_records < 1 || g_records > 100000000) usage();
    setvbuf(stdout, NULL, _IOLBF, 0);
    int64_t t_start = now_ns();

    char dir[PATH_MAX];
    make_workdir(dir, sizeof dir, g_dir_opt, "fieldsync-mem");
    printf("== fieldsync drain memory (Benchmarks/drain_memory.c), N = %ld ==\n", g_actions);
    print_machine(dir);
    printf("workload: backlog of %ld actions over %ld records (built in a child process), drained in-process; durability "
           "normal; batch size 500 (library default); pull on\n", g_actions, g_records);

    char dev[PATH_MAX + 32], hub[PATH_MAX + 32];
    snprintf(dev, sizeof dev, "%s/device.db", dir);
    snprintf(hub, sizeof hub, "%s/hub.db", dir);
    remove_db(dev);
    remove_db(hub);

    /* 1. Backlog, in a child. */
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        fs_store *st = bench_store_open(dev, NULL);
        bench_gen_t gen;
        gen_init(&gen, g_records, 0x5EED0003ull);
        double s = bench_build_backlog(st, &gen, 0, g_actions, g_actions >= 200000 ? g_actions / 10 : 0);
        print_kind_counts(gen.counts);
        gen_free(&gen);
        int64_t n = bench_outbox_count(st);
        bench_store_close(st);
        printf("backlog: %ld fs_store_apply in %.1f s (%.1f us/action, %.0f actions/s); outbox %lld; device file %.1f MiB\n",
               g_actions, s, s * 1e6 / g_actions, g_actions / s, (long long)n, db_size(dev) / 1048576.0);
        fflush(stdout);
        _exit(n == g_actions ? 0 : 3);
    }
    int status = 0;
    struct rusage cru;
    if (wait4(pid, &status, 0, &cru) < 0) die("wait4: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("the backlog child failed (status %d)", status);
    printf("  backlog child: peak RSS (ru_maxrss) %.1f MiB while applying\n", cru.ru_maxrss / 1024.0);
    double build_s = (now_ns() - t_start) / 1e9;

    /* 2. Drain, here. */
    printf("memory of this process:\n");
    print_mem("at start");
    fs_store *st = bench_store_open(dev, NULL);
    fs_hub *h = bench_hub_open(hub);
    int64_t backlog = bench_outbox_count(st);
    print_mem("store + hub opened");
    int reset = 0;
    FILE *cr = fopen("/proc/self/clear_refs", "w");
    if (cr) {
        reset = fputs("5", cr) >= 0;
        if (fclose(cr) != 0) reset = 0;
    }
    long rss_before = proc_status_kib("VmRSS"), hwm_before = proc_status_kib("VmHWM"), maxrss_before = maxrss_kib();
    print_mem(reset ? "before drain (VmHWM reset)" : "before drain (VmHWM not reset)");

    sampler_t smp;
    memset(&smp, 0, sizeof smp);
    smp.backlog = (long)backlog;
    smp.next_decile = 1;
    smp.max_rss = rss_before;
    smp.start = now_ns();
    machine_cpu_t m0 = machine_cpu();
    bench_drain_t d = bench_drain(st, h, NULL, 0, sample_cb, &smp, g_max_drain_s);
    machine_cpu_t m1 = machine_cpu();
    long rss_after = proc_status_kib("VmRSS"), hwm_after = proc_status_kib("VmHWM"), maxrss_after = maxrss_kib();
    print_mem(d.stopped_early ? "after drain (STOPPED EARLY)" : "after drain");
    int64_t left = bench_outbox_count(st);
    bench_store_close(st);
    bench_hub_close(h);
    print_mem("store + hub closed");
    double drain_s = d.wall_ns / 1e9;
    print_contention("the drain", m0, m1);
    printf("drain: %ld of %lld actions in %.1f s (%.0f actions/s, CPU %.1f s), %ld exchanges; rejected %ld, retry %ld; outbox left %lld; "
           "hub file %.1f MiB\n", d.applied, (long long)backlog, drain_s, d.applied / (drain_s > 0 ? drain_s : 1),
           d.cpu_s, d.exchanges, d.rejected, d.retry, (long long)left, db_size(hub) / 1048576.0);

    long peak_during = hwm_after > smp.max_rss ? hwm_after : smp.max_rss;
    printf("\npeak memory while draining N = %ld%s\n", g_actions, d.stopped_early ? " (PARTIAL: drain stopped early)" : "");
    printf("%-30s | %12s | %12s | %12s\n", "", "before drain", "during drain", "delta");
    printf("-------------------------------+--------------+--------------+-------------\n");
    printf("%-30s | %8.1f MiB | %8.1f MiB | %+8.1f MiB\n", "VmHWM (/proc/self/status)", hwm_before / 1024.0,
           hwm_after / 1024.0, (hwm_after - rss_before) / 1024.0);
    printf("%-30s | %8.1f MiB | %8.1f MiB | %+8.1f MiB\n", "ru_maxrss (getrusage)", maxrss_before / 1024.0,
           maxrss_after / 1024.0, (maxrss_after - rss_before) / 1024.0);
    printf("%-30s | %8.1f MiB | %8.1f MiB | %+8.1f MiB\n", "VmRSS sampled per exchange", rss_before / 1024.0,
           smp.max_rss / 1024.0, (smp.max_rss - rss_before) / 1024.0);
    printf("(delta = peak during the drain - VmRSS before it; VmRSS after the drain %.1f MiB)\n", rss_after / 1024.0);
    printf("target: peak < 64 MiB: %s (%.1f MiB); flat in N: compare the runs for N = 100,000 and 1,000,000\n",
           peak_during < 64 * 1024 ? "MET" : "NOT MET", peak_during / 1024.0);
    printf("RESULT N=%ld peak_mib=%.1f delta_mib=%.1f before_mib=%.1f drain_s=%.1f total_s=%.1f%s\n", g_actions,
           peak_during / 1024.0, (peak_during - rss_before) / 1024.0, rss_before / 1024.0, drain_s,
           (now_ns() - t_start) / 1e9, d.stopped_early ? " PARTIAL" : "");
    printf("time: backlog %.1f s + drain %.1f s = %.1f s total\n", build_s, drain_s, (now_ns() - t_start) / 1e9);

    if (!g_keep) {
        remove_db(dev);
        remove_db(hub);
        if (!g_dir_opt) rmdir(dir);
    } else {
        printf("files kept in %s\n", dir);
    }
    return (left == 0 || d.stopped_early) && d.rejected == 0 ? 0 : 1;
}
