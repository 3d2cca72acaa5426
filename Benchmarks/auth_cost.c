/* auth_cost — what authentication costs (issue 14, BENCHMARKS.md).
 *   1. libcrypto's Ed25519 alone: sign and verify a 64-byte message (an audit
 *      head) and a message the size of a 500-action request.
 *   2. The same backlog drained (prepare -> fs_hub_handle -> receive, batch 500)
 *      with authentication on (enrolled device, signed requests and responses)
 *      and off (hub and store {"auth":"off"}), alternating, per request and
 *      per action. Local actions (fs_store_apply) sign nothing: their cost
 *      does not change.
 * Usage: auth_cost [--actions N] [--runs N] [--only on|off] [--dir DIR] [--keep] */
#include "harness.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

static long g_actions = 10000;
static int g_runs = 3;
static const char *g_only = NULL; /* "on" or "off": one side only (for callgrind) */

static double ed25519_us(size_t bytes, int verify) {
    unsigned char seed[32], sig[64], *msg = malloc(bytes);
    size_t siglen = sizeof sig;
    RAND_bytes(seed, sizeof seed);
    RAND_bytes(msg, (int)bytes);
    EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof seed);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int n = bytes > 4096 ? 200 : 2000;
    int64_t *ns = malloc(sizeof *ns * (size_t)n);
    EVP_DigestSignInit(ctx, NULL, NULL, NULL, key);
    EVP_DigestSign(ctx, sig, &siglen, msg, bytes);
    for (int i = 0; i < n; i++) {
        int64_t t = h_now_ns();
        if (verify) {
            EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key);
            if (EVP_DigestVerify(ctx, sig, siglen, msg, bytes) != 1) h_die("Ed25519 verify failed");
        } else {
            EVP_DigestSignInit(ctx, NULL, NULL, NULL, key);
            EVP_DigestSign(ctx, sig, &siglen, msg, bytes);
        }
        ns[i] = h_now_ns() - t;
    }
    double p50 = h_pct(ns, n, 1e3).p50;
    free(ns);
    free(msg);
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(key);
    return p50;
}

typedef struct { double prepare, handle, receive, wall; long requests, req_bytes; } side;

static side drain(const char *dir, int run, int on) {
    char sp[PATH_MAX + 64], hp[PATH_MAX + 64], name[64];
    snprintf(name, sizeof name, "store-%d-%s.db", run, on ? "on" : "off");
    h_path(sp, dir, name);
    snprintf(name, sizeof name, "hub-%d-%s.db", run, on ? "on" : "off");
    h_path(hp, dir, name);
    fs_store *st = task_store(sp, on ? NULL : "\"auth\":\"off\"");
    fs_hub *hub = h_hub(hp, TASK_SCHEMA, on ? "{\"durability\":\"normal\"}" : "{\"durability\":\"normal\",\"auth\":\"off\"}");
    task_gen g;
    task_gen_init(&g, 1000, 42);
    task_backlog(st, &g, g_actions, 0);
    if (on) h_enroll(st, hub);
    h_drain_t d = h_drain(st, hub, 1, NULL, NULL, 0);
    side s = {0};
    for (long i = 0; i < d.exchanges; i++) {
        s.prepare += d.log[i].prepare_ns / 1e6;
        s.handle += d.log[i].handle_ns / 1e6;
        s.receive += d.log[i].receive_ns / 1e6;
    }
    s.wall = d.wall_ns / 1e6;
    s.requests = d.exchanges;
    s.req_bytes = (long)(d.req_bytes / (d.exchanges ? d.exchanges : 1));
    h_expect(d.applied == g_actions, "applied %ld of %ld actions", d.applied, g_actions);
    if (on) h_expect(h_hub_stat(hub, "auth_refused") == 0, "the hub refused requests");
    free(d.log);
    h_store_close(st);
    h_hub_close(hub);
    return s;
}

int main(int argc, char **argv) {
    h_opt opts[] = {{"--actions", 'l', &g_actions}, {"--runs", 'i', &g_runs}, {"--only", 's', &g_only}, {NULL, 0, NULL}};
    h_args(argc, argv, opts, "[--actions N] [--runs N] [--only on|off]");
    char dir[PATH_MAX + 64];
    h_begin("auth_cost", "authentication: signing and verifying per request and per action", dir, sizeof dir);
    if (g_only) { /* one side, for instruction counts: callgrind --toggle-collect=fs_sync_prepare ... */
        side one = drain(dir, 0, strcmp(g_only, "on") == 0);
        printf("auth %s: %ld requests, %.0f ms\n", g_only, one.requests, one.wall);
        return h_end(dir);
    }
    printf("libcrypto Ed25519 (p50): sign 64 B %.1f us, verify 64 B %.1f us; sign 190 KB %.1f us, verify 190 KB %.1f us\n",
           ed25519_us(64, 0), ed25519_us(64, 1), ed25519_us(190 * 1024, 0), ed25519_us(190 * 1024, 1));
    double on_ms[16], off_ms[16], on_req[3][16], off_req[3][16];
    long requests = 0, bytes = 0;
    if (g_runs > 16) g_runs = 16;
    for (int r = 0; r < g_runs; r++) {
        side on = drain(dir, r, 1), off = drain(dir, r, 0);
        requests = on.requests;
        bytes = on.req_bytes;
        on_ms[r] = on.wall;
        off_ms[r] = off.wall;
        on_req[0][r] = on.prepare / on.requests, on_req[1][r] = on.handle / on.requests, on_req[2][r] = on.receive / on.requests;
        off_req[0][r] = off.prepare / off.requests, off_req[1][r] = off.handle / off.requests, off_req[2][r] = off.receive / off.requests;
        printf("run %d: drain of %ld actions in %ld requests: auth on %.0f ms, off %.0f ms\n", r + 1, g_actions, on.requests, on.wall,
               off.wall);
    }
    double on_med = h_median(on_ms, g_runs), off_med = h_median(off_ms, g_runs);
    const char *step[3] = {"prepare (device signs)", "fs_hub_handle (hub verifies, signs)", "receive (device verifies)"};
    printf("per request (%ld requests of %ld actions, %ld bytes), median of %d runs, ms:\n", requests, g_actions / (requests ? requests : 1),
           bytes, g_runs);
    for (int k = 0; k < 3; k++) {
        double a = h_median(on_req[k], g_runs), b = h_median(off_req[k], g_runs);
        printf("  %-38s on %7.3f  off %7.3f  cost %+.3f\n", step[k], a, b, a - b);
    }
    printf("whole drain: on %.0f ms, off %.0f ms: %+.1f %% (%+.2f us per action)\n", on_med, off_med,
           100.0 * (on_med - off_med) / off_med, 1000.0 * (on_med - off_med) / (double)g_actions);
    h_target("drain with authentication on / off", on_med / off_med, "<=", 1.1, "x");
    return h_end(dir);
}
