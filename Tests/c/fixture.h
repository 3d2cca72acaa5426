/*
 * fixture.h — shared helpers of the C suite: the task schema, temp paths,
 * opening stores, applying actions, parsing the library's JSON with jansson,
 * and snapshots that prove a rejected call wrote nothing.
 */
#ifndef FS_TEST_FIXTURE_H
#define FS_TEST_FIXTURE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "fieldsync.h"
#include "runner.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The schema most tests use. */
#define TASK_SCHEMA                                                               \
    "{\"version\":1,\"types\":{\"task\":{\"fields\":{"                            \
    "\"status\":{\"type\":\"string\"},"                                           \
    "\"site\":{\"type\":\"string\",\"merge\":\"lww\"},"                           \
    "\"picked\":{\"type\":\"int\",\"merge\":\"counter\"},"                        \
    "\"weight\":{\"type\":\"float\"},"                                            \
    "\"urgent\":{\"type\":\"bool\"},"                                             \
    "\"tags\":{\"type\":\"set\"},"                                                \
    "\"on_hand\":{\"type\":\"int\",\"merge\":\"server\"},"                        \
    "\"locked\":{\"type\":\"int\",\"merge\":\"server\",\"device_writes\":false}," \
    "\"lines\":{\"type\":\"json\",\"merge\":\"custom\",\"resolver\":\"order_lines\"}" \
    "},\"required\":[\"status\"]}}}"

/* Every declared field of `task`, in declaration order. */
extern const char *const TASK_FIELDS[];
#define TASK_FIELD_COUNT 9

/* A pointer that is neither NULL nor the library's: output parameters are set
 * to it before a call that must fail, which must overwrite it with NULL. */
extern char fs_test_sentinel[1];
#define SENTINEL (&fs_test_sentinel[0])
void free_out(char *p); /* fs_free unless NULL or SENTINEL */

/* "name" inside the test's temp dir. The result lives in a rotating pool of
 * 16 buffers: copy it if you need it after 15 more calls. */
const char *test_path(const char *name);

/* Single-quoted JSON for readability: every ' becomes ". Pooled result. */
const char *Q(const char *single_quoted);

/* An action on task `id` by op-1 named "edit" with the given (single-quoted)
 * changes, e.g. act("T-1", "'set':{'status':'open'}"). Pooled result. */
const char *act(const char *id, const char *changes);

/* Frees the calling thread's pool (call at the end of a worker thread). */
void pool_release(void);

/* printf into a malloc()ed string (free with free()). */
char *strf(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* n copies of c, NUL-terminated, malloc()ed. */
char *repeat_char(char c, size_t n);

/* Writes `len` bytes to a new file; returns 0 on success. */
int write_file(const char *path, const void *data, size_t len);

/* Parses a library string (and fs_free()s it). NULL on NULL or bad JSON
 * (a bad JSON output is recorded as a failure). */
json_t *take_json_at(const char *file, int line, char *s);
#define take_json(s) take_json_at(__FILE__, __LINE__, (s))

/* Opens `file` in the test dir with `schema` and `options` (may be NULL);
 * records a failure and returns NULL if that fails. */
fs_store *open_store_at(const char *file, int line, const char *name, const char *schema,
                        const char *options);
#define open_store(name, schema, options) \
    open_store_at(__FILE__, __LINE__, (name), (schema), (options))
#define open_task_store() open_store_at(__FILE__, __LINE__, "store.db", TASK_SCHEMA, NULL)

/* Opening a task store with each of `options` (n of them) must give
 * FS_ERR_ARG and a NULL handle; records a failure for each that does not. */
void open_refused_at(const char *file, int line, const char *const *options, size_t n);
#define open_refused(options) \
    open_refused_at(__FILE__, __LINE__, (options), sizeof(options) / sizeof((options)[0]))

/* Applies and returns the parsed result (NULL + a failure if not FS_OK). */
json_t *apply_ok_at(const char *file, int line, fs_store *s, const char *action);
#define apply_ok(s, action) apply_ok_at(__FILE__, __LINE__, (s), (action))
/* Applies, frees any result, returns the status; fs_last_error() still
 * describes the apply afterwards. */
fs_status apply_status(fs_store *s, const char *action);

/* fs_store_get parsed (NULL + a failure if not FS_OK). */
json_t *get_ok_at(const char *file, int line, fs_store *s, const char *type, const char *id);
#define get_ok(s, type, id) get_ok_at(__FILE__, __LINE__, (s), (type), (id))

/* fs_store_query / fs_outbox_list / fs_audit_query parsed (NULL + failure). */
json_t *query_ok_at(const char *file, int line, fs_store *s, const char *query);
#define query_ok(s, q) query_ok_at(__FILE__, __LINE__, (s), (q))
json_t *outbox_ok_at(const char *file, int line, fs_store *s, const char *filter);
#define outbox_ok(s, f) outbox_ok_at(__FILE__, __LINE__, (s), (f))
json_t *audit_ok_at(const char *file, int line, fs_store *s, const char *filter);
#define audit_ok(s, f) audit_ok_at(__FILE__, __LINE__, (s), (f))
json_t *stats_ok_at(const char *file, int line, fs_store *s);
#define stats_ok(s) stats_ok_at(__FILE__, __LINE__, (s))

/* Counts; -1 when the call fails. */
int64_t outbox_count(fs_store *s);
long audit_count(fs_store *s);

/* Field accessors on a parsed object; missing keys give 0 / NULL. */
long long jint(json_t *obj, const char *key);
const char *jstr(json_t *obj, const char *key);
/* Compact JSON text with sorted keys (malloc()ed, free()). */
char *jdump(json_t *v);

/* `text` parsed, top-level member `key` replaced by `value` (stolen; NULL
 * removes the member), dumped again (free()). */
char *with_member(const char *text, const char *key, json_t *value);
/* `text` with member `key` of element `index` of array `array` replaced. */
char *with_item_member(const char *text, const char *array, size_t index, const char *key, json_t *value);
/* The ids of an array of records, joined by ',' (malloc()ed). */
char *ids_of(json_t *rows);

/* Everything a rejected call must leave as it was. */
typedef struct {
    int64_t outbox;
    long audit;
    char *records;     /* every task row, as JSON */
    char *outbox_list; /* the whole outbox, as JSON */
    char *audit_list;  /* the whole audit trail, as JSON */
} store_snap;
void snap_take(fs_store *s, store_snap *snap);
/* Records a failure for each difference; frees the snapshot. */
void snap_check_at(const char *file, int line, fs_store *s, store_snap *snap);
#define CHECK_UNCHANGED(s, snap) snap_check_at(__FILE__, __LINE__, (s), (snap))

/* Creates the standard record T-1 {status: open}. */
void create_task(fs_store *s, const char *id, const char *status);

/* The text Python's json.dumps(v, sort_keys=True, separators=(",", ":"),
 * ensure_ascii=False) gives (malloc()ed): the canonical form of docs/AUDIT.md. */
char *canonical_json(json_t *v);

/* The rows of audit chain verification (docs/AUDIT.md); returns the number of
 * problems found and records a failure for each. */
int verify_audit_chain_at(const char *file, int line, json_t *rows);
#define verify_audit_chain(rows) verify_audit_chain_at(__FILE__, __LINE__, (rows))
/* The same check, counting the problems without recording failures: for a
 * test that tampered with the rows and expects the verifier to object. */
int audit_chain_problems(json_t *rows);
/* The hash of an audit row (as fs_hub_audit_query lists it) after
 * `prev_hash`: what anyone can recompute, the chain being unkeyed. */
void audit_row_hash(json_t *row, const char *prev_hash, char out[65]);

/* ---- the hub and the sync loop (test_sync*.c, test_hub.c) ---- */

/* Opens a hub file in the test dir; records a failure and returns NULL if
 * that fails. */
fs_hub *open_hub_at(const char *file, int line, const char *name, const char *schema,
                    const char *options);
#define open_hub(name, schema, options) \
    open_hub_at(__FILE__, __LINE__, (name), (schema), (options))
#define open_task_hub() open_hub_at(__FILE__, __LINE__, "hub.db", TASK_SCHEMA, NULL)

/* A task store "<device_id>.db" opened with {"device_id": device_id} plus
 * `more_options` (members without braces, e.g. "\"pull_limit\":2"; may be
 * NULL). */
fs_store *open_device_at(const char *file, int line, const char *device_id,
                         const char *more_options);
#define open_device(device_id, more) open_device_at(__FILE__, __LINE__, (device_id), (more))

/* Enrolls the store's device at the hub with its public key and instance
 * (plus `extra` members of the enrollment, e.g. "\"write\":false"; may be
 * NULL) and pins the hub's key in the store, as an operator provisioning a
 * device does. Returns 0, or -1 and a failure. The sync helpers below do it
 * for a device the hub does not know yet. */
int enroll_at(const char *file, int line, fs_store *s, fs_hub *h, const char *extra);
#define enroll(s, h, extra) enroll_at(__FILE__, __LINE__, (s), (h), (extra))

/* fs_hub_query / fs_hub_audit_query / fs_hub_stats parsed (NULL + failure). */
json_t *hub_query_ok_at(const char *file, int line, fs_hub *h, const char *query);
#define hub_query_ok(h, q) hub_query_ok_at(__FILE__, __LINE__, (h), (q))
json_t *hub_audit_ok_at(const char *file, int line, fs_hub *h, const char *filter);
#define hub_audit_ok(h, f) hub_audit_ok_at(__FILE__, __LINE__, (h), (f))
json_t *hub_stats_ok_at(const char *file, int line, fs_hub *h);
#define hub_stats_ok(h) hub_stats_ok_at(__FILE__, __LINE__, (h))

/* fs_sync_prepare that must produce a request: its text (fs_free it), or NULL
 * and a failure. */
char *prepare_ok_at(const char *file, int line, fs_store *s);
#define prepare_ok(s) prepare_ok_at(__FILE__, __LINE__, (s))
/* fs_hub_handle that must succeed: the response text (fs_free it) or NULL. */
char *handle_ok_at(const char *file, int line, fs_hub *h, const char *request);
#define handle_ok(h, request) handle_ok_at(__FILE__, __LINE__, (h), (request))
/* fs_sync_receive that must succeed: the parsed summary or NULL. */
json_t *receive_ok_at(const char *file, int line, fs_store *s, const char *response);
#define receive_ok(s, response) receive_ok_at(__FILE__, __LINE__, (s), (response))

/* What a run of the sync loop saw: summaries added up. rounds is -1 when a
 * step failed (the failure is recorded). */
typedef struct {
    int rounds;
    long long applied, duplicate, rejected, retry, stuck, pulled;
    int more;          /* responses that said "more": true */
    int64_t last_wait; /* out_wait_ms of the prepare that ended the loop */
} sync_totals;

/* prepare -> fs_hub_handle -> receive until prepare returns no request (at
 * most 50 rounds); every step must return FS_OK. */
sync_totals sync_until_idle_at(const char *file, int line, fs_store *s, fs_hub *h);
#define sync_until_idle(s, h) sync_until_idle_at(__FILE__, __LINE__, (s), (h))
/* fs_sync_connectivity(s, 1) first, which makes a pull due: the device then
 * also learns what other devices wrote since its last pull. */
sync_totals sync_now_at(const char *file, int line, fs_store *s, fs_hub *h);
#define sync_now(s, h) sync_now_at(__FILE__, __LINE__, (s), (h))

/* All task rows of the hub or of a store's local view, as compact JSON. */
char *hub_records(fs_hub *h);
char *store_records(fs_store *s);
/* Records a failure unless the store's view of every task equals the hub's. */
void check_same_records_at(const char *file, int line, fs_store *s, fs_hub *h);
#define CHECK_SAME_RECORDS(s, h) check_same_records_at(__FILE__, __LINE__, (s), (h))

/* Everything a refused hub call must leave as it was. */
typedef struct {
    char *stats;   /* fs_hub_stats */
    char *records; /* every task row */
    char *audit;   /* every audit row */
} hub_snap;
void hub_snap_take(fs_hub *h, hub_snap *snap);
void hub_snap_check_at(const char *file, int line, fs_hub *h, hub_snap *snap);
#define CHECK_HUB_UNCHANGED(h, snap) hub_snap_check_at(__FILE__, __LINE__, (h), (snap))

/* fs_sync_receive must refuse `response` with `expected` (and a message),
 * leave the summary NULL and change nothing in the store; fs_hub_handle the
 * same for `request` and the hub. The _FREE forms take a malloc()ed text and
 * free it. */
void receive_refused(const char *file, int line, fs_store *s, const char *response, fs_status expected);
void handle_refused(const char *file, int line, fs_hub *h, const char *request, fs_status expected);
#define RECEIVE_REFUSED(s, response, expected) \
    receive_refused(__FILE__, __LINE__, (s), (response), (expected))
/* The same with a malloc()ed response, freed afterwards. */
#define RECEIVE_REFUSED_FREE(s, response, expected)                          \
    do {                                                                     \
        char *r_ = (response);                                               \
        receive_refused(__FILE__, __LINE__, (s), r_, (expected));            \
        free(r_);                                                            \
    } while (0)
#define HANDLE_REFUSED(h, request, expected) \
    handle_refused(__FILE__, __LINE__, (h), (request), (expected))
#define HANDLE_REFUSED_FREE(h, request, expected)                            \
    do {                                                                     \
        char *r_ = (request);                                                \
        handle_refused(__FILE__, __LINE__, (h), r_, (expected));             \
        free(r_);                                                            \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif /* FS_TEST_FIXTURE_H */
