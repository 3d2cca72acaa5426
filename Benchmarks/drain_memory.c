/* drain_memory.c — peak memory of the whole process while draining a backlog
 * of N actions over N/10 records in-process (target < 64 MiB, flat in N;
 * issue 13: not above the 40.4 MiB of the build before it). A forked child
 * builds the backlog, so the applies stay out of this process's peak; the
 * high-water mark is reset (/proc/self/clear_refs) before the drain, and
 * VmRSS is sampled after every exchange. Run each N in a fresh process.
 * Usage: drain_memory [N] [--records N] [--max-drain-seconds S] */
#include "harness.h"

#include <sys/resource.h>
#include <sys/wait.h>

static long g_actions = 100000, g_records = 0;
static double g_max_s = 0;

typedef struct { long backlog, next_decile, max_rss, at_first_decile; int64_t start; } sampler;

static void sample(const h_exchange *x, void *ctx) {
    sampler *s = ctx;
    long rss = h_rss_kib(), drained = s->backlog - x->outbox_after;
    if (rss > s->max_rss) s->max_rss = rss;
    for (; s->next_decile <= 10 && drained * 10 >= s->backlog * s->next_decile; s->next_decile++) {
        if (s->next_decile == 1) s->at_first_decile = s->max_rss;
        printf("    %3ld%% drained (%8ld actions, %7.1f s): VmRSS %6.1f MiB, max sampled so far %6.1f MiB, VmHWM %6.1f MiB\n",
               s->next_decile * 10, drained, (h_now_ns() - s->start) / 1e9, rss / 1024.0, s->max_rss / 1024.0,
               h_status_kib("VmHWM") / 1024.0);
    }
}

static void print_mem(const char *when) {
    printf("  %-32s VmRSS %7.1f MiB | VmHWM %7.1f MiB | ru_maxrss %7.1f MiB\n", when, h_status_kib("VmRSS") / 1024.0,
           h_status_kib("VmHWM") / 1024.0, h_maxrss_kib() / 1024.0);
}

int main(int argc, char **argv) {
    h_opt opts[] = {{NULL, 'l', &g_actions}, {"--records", 'l', &g_records}, {"--max-drain-seconds", 'd', &g_max_s}, {0}};
    h_args(argc, argv, opts, "[N] [--records N (default N / 10)] [--max-drain-seconds S]");
    if (g_records == 0) g_records = g_actions / 10 > 0 ? g_actions / 10 : 1;
    if (g_actions < 1 || g_records < 1 || g_records > 100000000) h_usage();
    int64_t t_start = h_now_ns();
    char dir[PATH_MAX], dev[PATH_MAX + 64], hub[PATH_MAX + 64];
    h_begin("drain_memory", "fieldsync drain memory", dir, sizeof dir);
    printf("workload: backlog of %ld actions over %ld records (built in a child process), drained in-process; durability "
           "normal; batch size 500 (library default); pull on\n", g_actions, g_records);
    h_path(dev, dir, "device.db");
    h_path(hub, dir, "hub.db");
    h_remove_db(dev);
    h_remove_db(hub);

    pid_t pid = fork();
    if (pid < 0) h_die("fork: %s", strerror(errno));
    if (pid == 0) {
        fs_store *st = task_store(dev, NULL);
        task_gen gen;
        task_gen_init(&gen, g_records, 0x5EED0003ull);
        double s = task_backlog(st, &gen, g_actions, g_actions >= 200000 ? g_actions / 10 : 0);
        int64_t n = h_outbox(st);
        h_store_close(st);
        printf("backlog: %ld fs_store_apply in %.1f s (%.1f us/action); outbox %lld; device file %.1f MiB\n", g_actions, s,
               s * 1e6 / g_actions, (long long)n, h_db_size(dev) / 1048576.0);
        fflush(stdout);
        _exit(n == g_actions ? 0 : 3);
    }
    int status = 0;
    struct rusage cru;
    if (wait4(pid, &status, 0, &cru) < 0) h_die("wait4: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) h_die("the backlog child failed (status %d)", status);
    printf("  backlog child: peak RSS (ru_maxrss) %.1f MiB while applying\n", cru.ru_maxrss / 1024.0);
    double build_s = (h_now_ns() - t_start) / 1e9;

    printf("memory of this process:\n");
    print_mem("at start");
    fs_store *st = task_store(dev, NULL);
    fs_hub *h = task_hub(hub);
    int64_t backlog = h_outbox(st);
    print_mem("store + hub opened");
    int reset = h_reset_peak();
    long rss_before = h_status_kib("VmRSS"), hwm_before = h_status_kib("VmHWM"), maxrss_before = h_maxrss_kib();
    print_mem(reset ? "before drain (VmHWM reset)" : "before drain (VmHWM not reset)");
    sampler smp = {(long)backlog, 1, rss_before, rss_before, h_now_ns()};
    h_load m0 = h_load_now();
    h_drain_t d = h_drain(st, h, 0, sample, &smp, g_max_s);
    h_contention("the drain", m0, h_load_now());
    long rss_after = h_status_kib("VmRSS"), hwm_after = h_status_kib("VmHWM"), maxrss_after = h_maxrss_kib();
    print_mem(d.stopped_early ? "after drain (STOPPED EARLY)" : "after drain");
    int64_t left = h_outbox(st);
    h_store_close(st);
    h_hub_close(h);
    print_mem("store + hub closed");
    double drain_s = d.wall_ns / 1e9;
    printf("drain: %ld of %lld actions in %.1f s (%.0f actions/s, CPU %.1f s), %ld exchanges; rejected %ld, retry %ld; outbox "
           "left %lld; hub file %.1f MiB\n", d.applied, (long long)backlog, drain_s, d.applied / (drain_s > 0 ? drain_s : 1),
           d.cpu_s, d.exchanges, d.rejected, d.retry, (long long)left, h_db_size(hub) / 1048576.0);
    h_expect((left == 0 || d.stopped_early) && d.rejected == 0, "the drain did not end as expected");

    long peak = hwm_after > smp.max_rss ? hwm_after : smp.max_rss;
    printf("\npeak memory while draining N = %ld%s\n", g_actions, d.stopped_early ? " (PARTIAL: drain stopped early)" : "");
    printf("%-30s | %12s | %12s | %12s\n", "", "before drain", "during drain", "delta");
    printf("%-30s | %8.1f MiB | %8.1f MiB | %+8.1f MiB\n", "VmHWM (/proc/self/status)", hwm_before / 1024.0, hwm_after / 1024.0,
           (hwm_after - rss_before) / 1024.0);
    printf("%-30s | %8.1f MiB | %8.1f MiB | %+8.1f MiB\n", "ru_maxrss (getrusage)", maxrss_before / 1024.0, maxrss_after / 1024.0,
           (maxrss_after - rss_before) / 1024.0);
    printf("%-30s | %8.1f MiB | %8.1f MiB | %+8.1f MiB\n", "VmRSS sampled per exchange", rss_before / 1024.0, smp.max_rss / 1024.0,
           (smp.max_rss - rss_before) / 1024.0);
    printf("(delta = peak during the drain - VmRSS before it; VmRSS after the drain %.1f MiB)\n", rss_after / 1024.0);
    h_target("peak RSS while draining", peak / 1024.0, "<", 64, " MiB");
    h_target("peak RSS while draining, issue 13 (the build before it: 40.2 / 40.4 MiB)", peak / 1024.0, "<=", 40.4, " MiB");
    printf("sampled RSS growth from 10 %% drained to the end: %+.1f MiB (flat in N: compare N = 100,000 and 1,000,000)\n",
           (smp.max_rss - smp.at_first_decile) / 1024.0);
    printf("RESULT N=%ld peak_mib=%.1f delta_mib=%.1f before_mib=%.1f drain_s=%.1f total_s=%.1f%s\n", g_actions, peak / 1024.0,
           (peak - rss_before) / 1024.0, rss_before / 1024.0, drain_s, (h_now_ns() - t_start) / 1e9,
           d.stopped_early ? " PARTIAL" : "");
    printf("time: backlog %.1f s + drain %.1f s = %.1f s total\n", build_s, drain_s, (h_now_ns() - t_start) / 1e9);
    if (!h_keep) h_remove_db(dev), h_remove_db(hub);
    return h_end(dir);
}
