/*
 * fieldsync.h — the public C interface of libfieldsync, an offline-first sync
 * engine for field devices.
 *
 * Conventions that hold for every function below (see docs/ABI.md):
 *
 *  - Every fallible call returns an fs_status: FS_OK (0) on success, an FS_ERR_*
 *    code otherwise. After any fs_* call, fs_last_error() describes the outcome
 *    of that call on the calling thread ("" after a success).
 *  - Outputs come through out-parameters, always last. On failure an output
 *    pointer is set to NULL (or 0) and nothing is written to the database.
 *  - Strings passed in are borrowed for the duration of the call, must be
 *    NUL-terminated UTF-8, and may be freed by the caller as soon as it returns.
 *  - Strings returned through `char **` are NUL-terminated UTF-8 JSON, owned by
 *    the caller, and must be released with fs_free().
 *  - A handle (fs_store, fs_hub) may be used from several threads: calls on one
 *    handle are serialised inside the library. A call blocks while another
 *    thread's call on the same handle runs, and, when another handle or process
 *    holds the database file's write lock, for at most the store's
 *    `busy_timeout_ms` (default 5000) before returning FS_ERR_BUSY.
 *  - Several store handles, in one process or several, may open one store
 *    file: each catches up with what the others committed before it writes,
 *    so nothing is numbered twice or lost (docs/ABI.md, Threads).
 *  - JSON arguments (actions, queries, filters, options, schemas) are limited
 *    to FS_MAX_JSON_BYTES; larger ones are refused with FS_ERR_TOO_BIG. They
 *    nest at most FS_MAX_DEPTH levels (sync messages FS_MAX_MESSAGE_DEPTH);
 *    deeper ones are refused with FS_ERR_JSON.
 *  - Every call works on a thread with a 64 KiB stack (FS_MIN_STACK_BYTES).
 *  - Bad input (NULL pointers, invalid UTF-8, malformed or wrongly typed JSON,
 *    unknown names, a closed or foreign handle) returns an error code and
 *    changes nothing. It never aborts the host process.
 */
#ifndef FIELDSYNC_H
#define FIELDSYNC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define FS_EXTERN __attribute__((visibility("default")))
#else
#define FS_EXTERN
#endif

/* ------------------------------------------------------------------------ */
/* Versions and errors                                                       */
/*                                                                           */
/* The macros tell which header a program was compiled against; fs_version() */
/* and fs_abi_version() tell which library it loaded. FS_ABI_VERSION changes */
/* only when the binary interface breaks, together with the SONAME           */
/* (libfieldsync.so.FS_ABI_VERSION).                                         */
/* ------------------------------------------------------------------------ */

#define FS_VERSION_MAJOR 0
#define FS_VERSION_MINOR 1
#define FS_VERSION_PATCH 0
#define FS_VERSION "0.1.0"
#define FS_ABI_VERSION 1

/* Largest JSON text accepted by any call, in bytes (excluding the NUL). */
#define FS_MAX_JSON_BYTES (1024 * 1024)
/* Longest record id, type name or field name, in bytes. */
#define FS_MAX_ID_BYTES 256
/* Deepest nesting of arrays and objects in a JSON text the host hands in: an
 * argument (action, query, filter, options, schema, refs) or a resolver's
 * answer. `[]` nests 1 level, so an action's "input" may nest
 * FS_MAX_DEPTH - 1 levels and a json field's value FS_MAX_DEPTH - 2. Deeper
 * text is refused with FS_ERR_JSON (and its position) before it is parsed. */
#define FS_MAX_DEPTH 128
/* Deepest nesting of a sync request or response (fs_hub_handle,
 * fs_sync_receive): FS_MAX_DEPTH plus the deepest envelope the engine wraps
 * a value in, a record state in a response:
 * {"changes":[{"state":{"fields":{"f": value}}}]}. Whatever fs_store_apply
 * accepts, a request and a response can carry. */
#define FS_MAX_MESSAGE_DEPTH (FS_MAX_DEPTH + 5)
/* A thread stack this large is enough for every call, at any nesting the
 * limits above accept: calls use at most 36 KiB (docs/ABI.md), and the test
 * suite makes them on threads with a 64 KiB stack, as a firmware task has. */
#define FS_MIN_STACK_BYTES (64 * 1024)

/* Status codes. Never renumbered or reused; new codes are only appended. */
typedef int32_t fs_status;
#define FS_OK                   0  /* success */
#define FS_ERR_ARG              1  /* bad argument: NULL pointer, wrong JSON shape, bad option */
#define FS_ERR_JSON             2  /* text is not valid JSON, not valid UTF-8, or nested past FS_MAX_DEPTH */
#define FS_ERR_SCHEMA           3  /* violates the schema: unknown type or field, wrong value type,
                                      missing required field, operation the field's policy forbids */
#define FS_ERR_NOT_FOUND        4  /* no such record, outbox entry or resolver */
#define FS_ERR_CONFLICT         5  /* the operation conflicts with the current state */
#define FS_ERR_IO               6  /* the file could not be opened, read or written */
#define FS_ERR_FULL             7  /* the disk (or database size limit) is full; nothing written */
#define FS_ERR_CORRUPT          8  /* the file is not a fieldsync database or is damaged */
#define FS_ERR_BUSY             9  /* another process held the database lock past busy_timeout_ms */
#define FS_ERR_UPGRADE_REQUIRED 10 /* the hub requires a newer schema version */
#define FS_ERR_CLOSED           11 /* the handle was closed */
#define FS_ERR_INTERNAL         12 /* a defect in libfieldsync; please report the message */
#define FS_ERR_TOO_BIG          13 /* an argument exceeds FS_MAX_JSON_BYTES or FS_MAX_ID_BYTES */
#define FS_ERR_MISUSE           14 /* the library was called in a way it cannot serve: a clock or
                                      resolver callback called back into the handle that is
                                      calling it (as SQLITE_MISUSE); nothing was done */
#define FS_ERR_AUTH             15 /* authentication failed: the hub refused the device (unknown,
                                      revoked, bad signature, another store instance), or a
                                      response does not verify with the pinned hub key;
                                      nothing was changed (docs/SECURITY.md) */

/* Returns the library's version, "MAJOR.MINOR.PATCH". Static storage: do not
 * free. Any thread. */
FS_EXTERN const char *fs_version(void);

/* Returns the library's ABI version (FS_ABI_VERSION of the header it was
 * built from). Any thread. */
FS_EXTERN int32_t fs_abi_version(void);

/* Returns a message describing the outcome of the calling thread's last fs_*
 * call: "" after a success, a human-readable reason after a failure. Never
 * NULL. Owned by the library and valid until the next fs_* call on the same
 * thread; copy it to keep it. Any thread (the message is thread-local). */
FS_EXTERN const char *fs_last_error(void);

/* Releases a string returned by the library. NULL is accepted and ignored.
 * Any thread. Equivalent to free(); a custom resolver's malloc()ed answer and
 * the library's strings are interchangeable in this respect. */
FS_EXTERN void fs_free(void *p);

/* Returns a static, human-readable name for a status code ("FS_OK",
 * "FS_ERR_ARG", ...), or "FS_ERR_UNKNOWN" for a code this library does not
 * know. Do not free. Any thread. */
FS_EXTERN const char *fs_status_name(fs_status status);

/* ------------------------------------------------------------------------ */
/* The device store                                                          */
/*                                                                           */
/* One SQLite file per device. Each record type of the schema gets a plain    */
/* table named after it (column `id` plus one column per field; sets and json */
/* as JSON text, bools as 0/1) that holds the local view: server-confirmed    */
/* state with this device's pending actions applied. Tables whose names start */
/* with `fs_` belong to the library. The host may read the file with plain    */
/* SQL (read-only) while the store is open.                                  */
/* ------------------------------------------------------------------------ */

typedef struct fs_store fs_store;

/* Opens (creating if needed) the store at `path` with the application schema
 * `schema_json` (docs/SCHEMA.md).
 *
 * options_json may be NULL, or an object with any of:
 *   "durability":      "full" (default: survives power loss) | "normal"
 *                      (survives an app crash; the last commits may be lost on
 *                      power loss)
 *   "device_id":       string [A-Za-z0-9_.:-]{1,64}; default: generated once
 *                      and kept in the file. Must match the stored id if given.
 *   "busy_timeout_ms": integer >= 0, default 5000.
 * Unknown option keys are refused (FS_ERR_ARG) so that a typo is not ignored.
 *
 * @param path          file path, borrowed. Created if absent.
 * @param schema_json   the schema, borrowed. Must have the version stored in
 *                      the file (if any) and the same content.
 * @param options_json  borrowed, may be NULL.
 * @param out_store     receives the handle (NULL on failure); release it with
 *                      fs_store_close().
 * @return FS_OK; FS_ERR_ARG (NULL path/schema/out, bad option), FS_ERR_JSON,
 *         FS_ERR_TOO_BIG, FS_ERR_SCHEMA (invalid schema, one that does not
 *         match the stored schema, or a "scope" option the hub would refuse:
 *         the message names the type/field; nothing is created),
 *         FS_ERR_IO (cannot open or create the file), FS_ERR_CORRUPT (not a
 *         fieldsync database), FS_ERR_BUSY, FS_ERR_FULL.
 * Blocks for the file open and, on first use, table creation (milliseconds).
 * Any thread. */
FS_EXTERN fs_status fs_store_open(const char *path, const char *schema_json,
                                  const char *options_json, fs_store **out_store);

/* Closes the store and releases its resources. NULL is accepted (FS_OK).
 * Later calls with the same handle return FS_ERR_CLOSED: a closed handle keeps
 * a few bytes so that use-after-close is detected. Waits for a call running on
 * another thread to finish.
 * @return FS_OK; FS_ERR_CLOSED if already closed; FS_ERR_ARG if `store` is not
 *         a store handle. */
FS_EXTERN fs_status fs_store_close(fs_store *store);

/* Replaces the store's wall clock (default: CLOCK_REALTIME) with `now_ms`,
 * which returns milliseconds since the Unix epoch. It is called with `ctx`
 * during fs_store_apply and the sync steps, on the thread making that call,
 * while the store's lock is held: a call it makes back into the same store
 * is refused with FS_ERR_MISUSE (it would deadlock). It may return anything:
 * values below 0 count as 0 and values past year 6429 as that year, so the
 * clock cannot overflow a stamp or a wait. Passing now_ms == NULL restores the
 * system clock. The hybrid logical clock never goes backwards and never wraps
 * whatever this returns.
 * @return FS_OK; FS_ERR_ARG (bad handle), FS_ERR_CLOSED. */
FS_EXTERN fs_status fs_store_set_clock(fs_store *store, int64_t (*now_ms)(void *ctx), void *ctx);

/* Applies one operator action. In one transaction it updates the record's
 * local view, appends one outbox entry and appends one audit row; either all
 * three are written or none.
 *
 * action_json:
 *   {"action": "pick_item",      name of the action (required, string)
 *    "actor": "op-17",           who acted (required, string)
 *    "type": "task", "id": "T-1",
 *    "set":    {"status": "picked"},      lww / server / custom / any non-counter,
 *                                         non-set field; null clears it
 *    "inc":    {"picked": 1},             counter fields only: a delta
 *    "add":    {"tags": ["urgent"]},      set fields only
 *    "remove": {"tags": ["late"]},        set fields only
 *    "delete": true,                      tombstone the record (alone)
 *    "input":  {...}}                     any JSON, kept verbatim in the audit row
 * At least one change is required. Creating a record requires every required
 * field in "set".
 *
 * @param out_result_json receives, caller frees with fs_free():
 *   {"record": <record>, "outbox_key": "dev-42", "audit_id": 42, "seq": 42,
 *    "hlc": <stamp>}
 *   where <record> is the new local view (see fs_store_get), with
 *   "_fs": {"deleted": true} after a delete.
 * @return FS_OK; FS_ERR_ARG (NULL pointer, wrong JSON shape, no change, delete
 *         combined with other changes, counter overflow), FS_ERR_JSON,
 *         FS_ERR_TOO_BIG, FS_ERR_SCHEMA (unknown type or field, wrong value
 *         type, missing required field, `inc` on a non-counter, `set` on a
 *         counter or set field, a field with "device_writes": false),
 *         FS_ERR_NOT_FOUND (delete of a record that does not exist; a change
 *         to a record evicted by hygiene that cannot be made without its
 *         fields: fetch it first, see fs_fetch_request),
 *         FS_ERR_FULL, FS_ERR_IO, FS_ERR_BUSY, FS_ERR_CLOSED.
 * Blocks for one SQLite transaction: tens of microseconds with durability
 * "normal", one fsync with "full". Any thread. */
FS_EXTERN fs_status fs_store_apply(fs_store *store, const char *action_json, char **out_result_json);

/* Reads one record of the local view.
 * @param out_record_json receives, caller frees with fs_free():
 *   {"type": "task", "id": "T-1", <every declared field, null when unset,
 *    sets as sorted arrays>, "_fs": {"server_version": <int or null>,
 *    "pending": <outbox entries of this record not yet acked>}}
 * @return FS_OK; FS_ERR_ARG (NULL pointer, bad handle), FS_ERR_TOO_BIG,
 *         FS_ERR_SCHEMA (unknown type), FS_ERR_NOT_FOUND (no such record, or
 *         deleted), FS_ERR_JSON (invalid UTF-8 in type or id), FS_ERR_CLOSED.
 * Any thread. */
FS_EXTERN fs_status fs_store_get(fs_store *store, const char *type, const char *id,
                                 char **out_record_json);

/* Runs a small query over one type's local view.
 * query_json: {"type": "task",
 *              "where": {"status": "open", "picked": {">=": 3, "<": 10}},
 *              "order_by": "picked", "desc": true, "limit": 100}
 *   "where" maps a field (or "id") to a value (equality; null matches unset)
 *   or to an object of operators "=", "!=", "<", "<=", ">", ">=". Only
 *   string, int, float and bool fields (and "id") can be filtered or ordered.
 *   Rows come in "order_by" order (default "id"); "limit" defaults to no limit.
 * @param out_rows_json receives a JSON array of records shaped as in
 *   fs_store_get without "_fs"; caller frees with fs_free().
 * @return FS_OK; FS_ERR_ARG, FS_ERR_JSON, FS_ERR_TOO_BIG, FS_ERR_SCHEMA
 *         (unknown type or field, a filter value of the wrong type, a set or
 *         json field in where/order_by), FS_ERR_CLOSED.
 * Any thread. */
FS_EXTERN fs_status fs_store_query(fs_store *store, const char *query_json, char **out_rows_json);

/* Reports the store's counters as a flat JSON object of numbers and strings
 * (keys in docs/ABI.md), e.g. {"device_id": "...", "schema_version": 2,
 * "records": 10, "outbox_pending": 3, "audit_rows": 12, ...}; for a hub
 * restored from an earlier copy "acked_retained" (acknowledged entries kept
 * for the option "acked_retention_s"), "hub_recoveries", "last_hub_recovery",
 * "entries_lost_in_hub_restore" and "hub_restore_incomplete"; with the
 * store's identity: "public_key" (its Ed25519 key, 64 hex digits: what the
 * hub enrolls), "instance_id" (32 hex digits, made with the file), "hub_key"
 * (the pinned hub key, or "" when none is), "auth" ("on"/"off"), "signer" ("store", or
 * "host" while fs_store_set_signer's callback signs).
 * @param out_stats_json caller frees with fs_free().
 * @return FS_OK; FS_ERR_ARG, FS_ERR_CLOSED, FS_ERR_IO. Any thread. */
FS_EXTERN fs_status fs_store_stats(fs_store *store, char **out_stats_json);

/* Writes a consistent copy of the store file to `path` (a device image),
 * as fs_hub_backup() does for a hub: written beside `path` and renamed into
 * place when complete; other handles keep writing meanwhile. A store opened
 * from such a copy later is the same device (key, instance): if its hub has
 * moved on, it recovers by itself (docs/SECURITY.md "Restored stores").
 * @param path borrowed; must not exist.
 * @return FS_OK; FS_ERR_ARG, FS_ERR_IO, FS_ERR_FULL, FS_ERR_BUSY,
 *         FS_ERR_CLOSED. Any thread. */
FS_EXTERN fs_status fs_store_backup(fs_store *store, const char *path);

/* Runs a storage-hygiene pass (docs/HYGIENE.md) in one transaction, then
 * reclaims space (WAL checkpoint and incremental vacuum). It evicts records
 * the hub has acknowledged that have no outbox entry in any state and are
 * archived (a field holds one of its type's "archive_when" values) or
 * unchanged for longer than "keep_days"; fetched records whose cache time
 * (option "fetch_ttl_ms") is up; and, with the option "audit_keep_days",
 * settled audit rows the hub has received that are older than that, as a
 * prefix whose last hash becomes the chain's anchor (fs_store_stats
 * "audit_anchor_hash"). Nothing the hub has not acknowledged is evicted.
 * Options "hygiene_on_open": true and "hygiene_every": N (actions, checked
 * after each fs_sync_receive) run it automatically.
 * @param out_report_json receives, caller frees:
 *   {"records_evicted": n, "records_evicted_<type>": n, "fetched_expired": n,
 *    "audit_rows_evicted": n, "acked_evicted": n (acknowledged entries kept
 *    longer than "acked_retention_s"), "bytes_before": n, "bytes_after": n,
 *    "bytes_reclaimed": n}
 * @return FS_OK; FS_ERR_ARG, FS_ERR_CLOSED, FS_ERR_IO, FS_ERR_FULL,
 *         FS_ERR_BUSY. Blocks for one pass: milliseconds per thousand
 *         records examined. Any thread. */
FS_EXTERN fs_status fs_store_hygiene(fs_store *store, char **out_report_json);

/* Builds a request asking the hub for records this device does not hold
 * (evicted by hygiene, or outside its scope). Send it like a sync request and
 * hand the answer to fs_sync_receive(): the records are stored and cached for
 * "fetch_ttl_ms" (default 600000), then evicted by hygiene unless the operator
 * changes them, which makes them normal records again. fs_store_get() of an
 * evicted record answers FS_ERR_NOT_FOUND with a message saying so.
 * @param refs_json borrowed: [{"type": "task", "id": "T-9"}, ...], at most 1000.
 * @param out_request_json receives the request, caller frees.
 * @return FS_OK; FS_ERR_ARG, FS_ERR_JSON, FS_ERR_TOO_BIG, FS_ERR_SCHEMA
 *         (unknown type), FS_ERR_UPGRADE_REQUIRED, FS_ERR_CLOSED. Any thread. */
FS_EXTERN fs_status fs_fetch_request(fs_store *store, const char *refs_json, char **out_request_json);

/* ------------------------------------------------------------------------ */
/* The outbox                                                                */
/*                                                                           */
/* One entry per applied action, keyed "<device_id>-<seq>", kept until the   */
/* hub acknowledges it. States: "pending", "inflight", "rejected" (the hub   */
/* refused it; kept with the reason until the host discards it) and "stuck"  */
/* (retries exhausted; never deleted by the library).                        */
/* ------------------------------------------------------------------------ */

/* Counts outbox entries not yet acknowledged by the hub (all states).
 * @param out_count receives the count (0 on failure).
 * @return FS_OK; FS_ERR_ARG, FS_ERR_CLOSED. Any thread. */
FS_EXTERN fs_status fs_outbox_count(fs_store *store, int64_t *out_count);

/* Lists outbox entries in sequence order.
 * filter_json may be NULL or {"state": "pending"|"inflight"|"rejected"|"stuck",
 *   "type": "task", "id": "T-1", "limit": 100}.
 * @param out_entries_json receives a JSON array of entries, caller frees:
 *   {"key": "dev-42", "seq": 42, "type": "task", "id": "T-1",
 *    "action": "pick_item", "actor": "op-17", "device_time": <ms>,
 *    "hlc": <stamp>, "schema_version": 2,
 *    "ops": {"set": {...}, "inc": {...}, "add": {...}, "remove": {...},
 *            "delete": true},            (only the operations present)
 *    "base": {"on_hand": 7},             server versions for `server` fields
 *    "state": "pending", "attempts": 0, "next_attempt_at": 0, "reason": null}
 * @return FS_OK; FS_ERR_ARG, FS_ERR_JSON, FS_ERR_TOO_BIG, FS_ERR_CLOSED.
 * Any thread. */
FS_EXTERN fs_status fs_outbox_list(fs_store *store, const char *filter_json, char **out_entries_json);

/* Discards a rejected or stuck outbox entry: the entry is removed, the
 * record's local view is recomputed without it, and its audit row's outcome
 * becomes "discarded" (the audit row itself stays).
 * @param key the entry's key, borrowed.
 * @return FS_OK; FS_ERR_ARG (NULL), FS_ERR_NOT_FOUND (no such entry),
 *         FS_ERR_CONFLICT (the entry is pending or in flight: only the hub's
 *         answer may remove it), FS_ERR_CLOSED, FS_ERR_IO, FS_ERR_FULL.
 * Any thread. */
FS_EXTERN fs_status fs_outbox_discard(fs_store *store, const char *key);

/* ------------------------------------------------------------------------ */
/* The audit trail                                                           */
/*                                                                           */
/* One row per successful fs_store_apply, written in the same transaction,    */
/* chained by SHA-256 (docs/AUDIT.md gives the exact canonical form).        */
/* ------------------------------------------------------------------------ */

/* Lists audit rows in audit_id order.
 * filter_json may be NULL or {"type": "task", "id": "T-1", "actor": "op-17",
 *   "action": "pick_item", "since": <ms>, "until": <ms>, "limit": 100,
 *   "desc": false}; since/until bound device_time (since inclusive, until
 *   exclusive).
 * @param out_rows_json receives a JSON array, caller frees:
 *   {"audit_id": 42, "device_id": "...", "actor": "op-17",
 *    "action": "pick_item", "type": "task", "id": "T-1", "input": {...},
 *    "device_time": <ms>, "hlc": <stamp>, "outbox_keys": ["dev-42"],
 *    "prev_hash": "<hex>", "hash": "<hex>",
 *    "outcome": "pending"|"applied"|"rejected"|"discarded", "reason": null,
 *    "server_received_at": null}
 * @return FS_OK; FS_ERR_ARG, FS_ERR_JSON, FS_ERR_TOO_BIG, FS_ERR_CLOSED.
 * Any thread. */
FS_EXTERN fs_status fs_audit_query(fs_store *store, const char *filter_json, char **out_rows_json);

/* ------------------------------------------------------------------------ */
/* Sync steps                                                                */
/*                                                                           */
/* The library never opens a socket. The host asks fs_sync_prepare() what to */
/* send, moves the request to the hub by any transport (fs_hub_handle()      */
/* in-process, HTTP, MQTT, BLE, a USB stick), and hands the answer to        */
/* fs_sync_receive(), or reports a transport failure with fs_sync_fail().    */
/* Wire shapes: docs/PROTOCOL.md. Sync options go in fs_store_open's         */
/* options_json: "batch_size" (500), "batch_bytes" (4 MiB: requests are    */
/* sized by bytes as well as count, always one entry at least),              */
/* "pull_limit" (1000), "backoff_base_ms" (500), "backoff_cap_ms" (60000),   */
/* "max_attempts" (8), "pull_interval_ms" (60000; 0 = pull only when asked), */
/* "scope" ({"task": {"site": "WH-3"}}, checked against the schema at open),*/
/* "max_clock_skew_ms" (24 h: a stamp pulled from the hub further ahead of  */
/* the device's clock is kept in the record but never adopted by the clock),*/
/* "protocol" (2; 1 while the hub runs a release older than this library),  */
/* "acked_retention_s" (604800 = 7 days, 0 to 10 years: acknowledged        */
/* entries are kept this long and sent again to a hub restored from an      */
/* earlier copy; 0 keeps none; docs/OPERATIONS.md "Restoring a hub").       */
/* Every integer option has a range (docs/ABI.md "Store options"); a value  */
/* outside it is FS_ERR_ARG at open.                                         */
/* Each step is one SQLite transaction; a crash at any point loses nothing   */
/* and, because the hub deduplicates, applies nothing twice. A step that     */
/* fails for want of space checkpoints the WAL (giving its space back) and   */
/* tries once more, so a store that hit FS_ERR_FULL can still drain its      */
/* outbox to the hub, which is what frees space.                             */
/* ------------------------------------------------------------------------ */

/* Largest request or response accepted by fs_hub_handle / fs_sync_receive. */
#define FS_MAX_MESSAGE_BYTES (64 * 1024 * 1024)

/* Decides what to send now. Marks the chosen outbox entries "inflight" (an
 * earlier batch that was never answered is superseded and sent again).
 * @param out_request_json receives the request (caller frees with fs_free()),
 *        or NULL when nothing is due.
 * @param out_wait_ms receives 0 with a request; otherwise milliseconds until
 *        something may be due, or -1 when nothing is pending and no pull will
 *        fall due (pull_interval_ms 0), or while the hub requires an upgrade.
 *        Never more than backoff_cap_ms while entries are pending.
 * @return FS_OK; FS_ERR_ARG, FS_ERR_CLOSED, FS_ERR_IO, FS_ERR_FULL, FS_ERR_BUSY.
 * Any thread. */
FS_EXTERN fs_status fs_sync_prepare(fs_store *store, char **out_request_json, int64_t *out_wait_ms);

/* Applies the hub's response to the last request, in one transaction: acked
 * entries leave the outbox, rejected ones stay listed with the reason, entries
 * to retry back off (and become "stuck" after max_attempts), pulled changes
 * update the server-confirmed state and pending actions are replayed on top.
 * @param response_json borrowed.
 * @param out_summary_json receives, caller frees:
 *   {"applied": n, "duplicate": n, "rejected": n, "retry": n, "stuck": n,
 *    "pulled": n, "cursor": n, "more": bool, "outbox": n}
 * Unless the store was opened with "auth": "off", the response must carry a
 * signature that verifies with the pinned hub key (fs_store_pin_hub),
 * checked before anything in it is read.
 * @return FS_OK; FS_ERR_AUTH (no hub key pinned, a response unsigned or not
 *         signed by the pinned key, or the hub refused this device: its code
 *         and message in fs_last_error(); nothing is changed, the outbox
 *         kept), FS_ERR_ARG (wrong shape, a response for another device or
 *         for a batch this store never sent, an entry key of another device:
 *         nothing is changed), FS_ERR_JSON, FS_ERR_TOO_BIG,
 *         FS_ERR_UPGRADE_REQUIRED (the hub requires a newer schema: the outbox
 *         is kept, fs_store_stats shows "sync_state": "upgrade_required", and
 *         prepare sends nothing until the store is reopened with a newer
 *         schema), FS_ERR_CONFLICT (the hub refused the whole request for
 *         another reason, in fs_last_error(): "protocol_unsupported" from a
 *         hub older than this library says to open the store with
 *         "protocol": 1), FS_ERR_CLOSED, FS_ERR_IO,
 *         FS_ERR_FULL. Any thread. */
FS_EXTERN fs_status fs_sync_receive(fs_store *store, const char *response_json, char **out_summary_json);

/* Reports that the last request could not be delivered or answered (network
 * down, timeout, HTTP 5xx). Its entries return to "pending" without counting
 * an attempt; the next prepare waits a jittered exponential backoff.
 * @param reason borrowed, may be NULL; shown in fs_store_stats "last_failure".
 * @return FS_OK; FS_ERR_ARG, FS_ERR_CLOSED, FS_ERR_IO. Any thread. */
FS_EXTERN fs_status fs_sync_fail(fs_store *store, const char *reason);

/* ------------------------------------------------------------------------ */
/* Authentication (docs/SECURITY.md)                                          */
/*                                                                           */
/* Every store has an Ed25519 key pair and an instance id, made with its file */
/* (fs_store_stats "public_key", "instance_id"). It signs every request it    */
/* prepares. The hub enrolls the device's public key (fs_hub_enroll) and      */
/* answers with its own key, which the device pins (fs_store_pin_hub): from   */
/* then on fs_sync_receive believes only responses signed with it. Requests   */
/* and responses are signed as the exact bytes the library wrote: a transport */
/* must carry them byte for byte (trailing whitespace is tolerated).          */
/* A store opened with {"auth": "off"} neither signs nor verifies.            */
/* ------------------------------------------------------------------------ */

/* Pins the hub's public key (64 hex digits: the "hub_key" fs_hub_enroll
 * returned, or fs_hub_stats "public_key"). Kept in the store file. Until a
 * key is pinned, fs_sync_receive refuses every response with FS_ERR_AUTH
 * (unless the store was opened with "auth": "off"); pinning another key later
 * moves the device to another hub.
 * @param hub_key borrowed.
 * @return FS_OK; FS_ERR_ARG (not 64 hex digits, or a key of small order),
 *         FS_ERR_CLOSED, FS_ERR_IO,
 *         FS_ERR_FULL, FS_ERR_BUSY. Any thread. */
FS_EXTERN fs_status fs_store_pin_hub(fs_store *store, const char *hub_key);

/* A signing callback: writes the Ed25519 signature (RFC 8032, 64 bytes) of
 * `length` bytes at `message` to `signature` and returns FS_OK. For keys
 * that never enter the library (a secure element, a TPM). The messages are
 * short (under 400 bytes: a context line with a SHA-256 digest, or an audit
 * head; docs/PROTOCOL.md "Signatures"). `message` is valid only during the
 * call. */
typedef fs_status
    (*fs_sign_fn)(void *ctx, const uint8_t *message, size_t length, uint8_t signature[64]);

/* Makes `fn` (with `ctx`) sign this handle's requests instead of the key in
 * the store file; `public_key` (64 hex digits, borrowed) is the key it signs
 * with, the one to enroll at the hub. Not kept in the file: set it again
 * after every open. fn == NULL goes back to the file's key. The callback is
 * called by fs_sync_prepare and fs_fetch_request on the calling thread with
 * the store's lock held and the write transaction open (a call back into the
 * store gets FS_ERR_MISUSE); twice per request at most. Its signature is
 * verified before use: a failing status or a signature that does not verify
 * fails that call with FS_ERR_ARG and changes nothing.
 * @return FS_OK; FS_ERR_ARG (public_key not 64 hex digits), FS_ERR_CLOSED.
 * Any thread. */
FS_EXTERN fs_status fs_store_set_signer(fs_store *store, const char *public_key, fs_sign_fn fn, void *ctx);

/* Replaces the key pair in the store file with a new one (a rotation; drops a
 * signer set on this handle). Enroll the new public key at the hub: until
 * then the hub refuses this device's requests ("bad_signature").
 * @param out_public_key receives the new public key, 64 hex digits; caller
 *        frees with fs_free().
 * @return FS_OK; FS_ERR_ARG, FS_ERR_CLOSED, FS_ERR_IO, FS_ERR_FULL, FS_ERR_BUSY.
 * Any thread. */
FS_EXTERN fs_status fs_store_rotate_key(fs_store *store, char **out_public_key);

/* Tells the store whether the network is up (1) or down (0). Up resets every
 * backoff and makes a pull due, so the next fs_sync_prepare() returns a request
 * at once (wait 0). While down, prepare returns no request and a wait of
 * backoff_cap_ms. Up writes to the store (due times of entries backing off);
 * when that write fails nothing changes, in memory either: the store stays
 * offline (or in backoff) and the call may be repeated.
 * @return FS_OK; FS_ERR_ARG, FS_ERR_CLOSED, FS_ERR_IO, FS_ERR_FULL,
 *         FS_ERR_BUSY (another process held the write lock past
 *         busy_timeout_ms). Any thread. */
FS_EXTERN fs_status fs_sync_connectivity(fs_store *store, int32_t up);

/* ------------------------------------------------------------------------ */
/* The hub                                                                   */
/*                                                                           */
/* The server side, in the same library: a request -> response function over */
/* its own SQLite file, or over a PostgreSQL database that several hub        */
/* processes share. It deduplicates entries (a resend is answered             */
/* "duplicate" with the original outcome), merges per field with the same     */
/* rules devices use, numbers every change, keeps every device's audit rows   */
/* with server_received_at and verifies their hash chains, and answers pulls. */
/* Serve it in-process, or over any transport (python -m fieldsync serve).    */
/* ------------------------------------------------------------------------ */

typedef struct fs_hub fs_hub;

/* Opens (creating if needed) the hub database at `path`.
 * options_json may be NULL or {"durability": "full"|"normal",
 * "busy_timeout_ms": 5000 (0 to 2147483647), "max_clock_skew_ms": 86400000,
 * "auth": "on"|"off", "storage": "sqlite"|"postgres", "dsn": "..."}.
 * With "storage": "postgres" the hub keeps its state in the PostgreSQL
 * database "dsn" names (a libpq connection string, at most 4096 bytes);
 * `path` must then be NULL or "", "durability" (SQLite's) is refused, and
 * "busy_timeout_ms" bounds the wait for another process's lock (then
 * FS_ERR_BUSY). Any number of handles in any number of processes
 * on any hosts may serve one such database at once: they share the ledger,
 * the records, the change log, the registry, the audit and the counters
 * (docs/OPERATIONS.md "PostgreSQL hub"). libpq.so.5 is loaded with dlopen
 * at the first such open; this library does not link it. The database must
 * hold no tables but the hub's (in its current schema; search_path chooses
 * another). With "auth" on (the default) only requests signed by
 * an enrolled device are handled (fs_hub_enroll; docs/SECURITY.md); "off"
 * is shown in fs_hub_stats and logged in fs_hub_devices "refusals" at every
 * open. The hub makes its key pair with the file and signs every response.
 * an entry stamped further ahead of the hub's clock than max_clock_skew_ms
 * (0 to 10 years, default 24 h) is rejected with reason "clock_skew"
 * (docs/ABI.md). A hub file made by an older version is brought up to date
 * when opened.
 * @param out_hub receives the handle; release with fs_hub_close().
 * @param path borrowed; NULL only with "storage": "postgres".
 * @return FS_OK; FS_ERR_ARG, FS_ERR_JSON, FS_ERR_TOO_BIG, FS_ERR_SCHEMA,
 *         FS_ERR_IO (also: libpq missing, the server refused or unreachable,
 *         with libpq's message), FS_ERR_CORRUPT (not a hub database),
 *         FS_ERR_BUSY.
 * Any thread. */
FS_EXTERN fs_status fs_hub_open(const char *path, const char *schema_json,
                                const char *options_json, fs_hub **out_hub);

/* Closes the hub. NULL is accepted. Later calls return FS_ERR_CLOSED.
 * @return FS_OK; FS_ERR_CLOSED, FS_ERR_ARG. */
FS_EXTERN fs_status fs_hub_close(fs_hub *hub);

/* Replaces the hub's wall clock (server_received_at, server_time), as
 * fs_store_set_clock() does for a store. NULL restores the system clock.
 * @return FS_OK; FS_ERR_ARG, FS_ERR_CLOSED. */
FS_EXTERN fs_status fs_hub_set_clock(fs_hub *hub, int64_t (*now_ms)(void *ctx), void *ctx);

/* Handles one request from a device (the text fs_sync_prepare() produced) in
 * one transaction and produces the response to hand to fs_sync_receive().
 * Requests the hub refuses as a whole still get FS_OK and a response
 * carrying {"error": {"code": ..., "message": ...}}: "upgrade_required" when
 * the client's schema is below min_client_version, "protocol_unsupported"
 * when the request uses a newer protocol than this hub, and, with "auth" on,
 * "unsigned", "unknown_device", "revoked", "bad_signature" (also a key
 * rotated out) or "instance_mismatch" (another store than the enrolled one):
 * each counted in fs_hub_stats ("auth_refused_<code>") and logged with the
 * device id (fs_hub_devices "refusals"); the device's fs_sync_receive then
 * returns FS_ERR_AUTH. An enrolled device's entries outside its scope, or
 * any entry of a read-only device, are "rejected" ("out_of_scope"); fetched
 * records outside it are answered "missing", pulls leave them out. Every
 * response is signed with the hub's key (the request text must reach the
 * hub byte for byte: its signature covers the bytes). A request is
 * answered in its own protocol (1 or 2), so devices not yet upgraded keep
 * syncing.
 * Every member is range-checked as it is read (docs/PROTOCOL.md). Entries
 * are answered one by one: a stamp beyond the maximum clock skew is
 * "rejected" ("clock_skew"), a key the hub decided for other content is
 * "rejected" ("key_reused", never "duplicate"); an audit row whose id the
 * hub holds with other content is listed in "audit_refused", not
 * acknowledged. A response carries about 16 MiB of record states at most
 * (a pull page then says "more": true).
 * @param out_response_json receives the response, caller frees.
 * @return FS_OK; FS_ERR_ARG (not a request: wrong shape, a member of the
 *         wrong kind or out of range, named in the message; entries whose
 *         keys are not the sender's, audit rows naming another device's
 *         outbox keys), FS_ERR_JSON, FS_ERR_TOO_BIG,
 *         FS_ERR_SCHEMA (a scope naming unknown types or fields, set or json
 *         fields, or values of the wrong type; or another handle migrated
 *         the hub file to a newer schema since this one opened it: reopen
 *         with that schema), FS_ERR_CLOSED, FS_ERR_IO,
 *         FS_ERR_FULL, FS_ERR_BUSY. On error nothing is applied.
 * Blocks for one transaction: about 15 ms of CPU per 100 entries on a 2-core
 * VM (BENCHMARKS.md). Any thread. */
FS_EXTERN fs_status fs_hub_handle(fs_hub *hub, const char *request_json, char **out_response_json);

/* A custom-merge resolver (fields with "merge": "custom"). The hub calls it
 * only when a device's write to such a field meets a change the device had not
 * seen, with conflict_json:
 *   {"type": "task", "id": "T-1", "field": "lines",
 *    "base": <the server value the device's write was based on>,
 *    "server": <the hub's current value>, "incoming": <the device's value>,
 *    "incoming_actor": "op-17", "incoming_device": "tablet-7"}
 * It returns FS_OK and sets *out_value_json to the merged value as JSON text
 * in memory from malloc() (the library releases it with free()); any other
 * status, no value, invalid JSON (nesting past FS_MAX_DEPTH included) or a
 * value of the wrong type rejects the device's whole action with reason
 * "resolver_failed" or "resolver_invalid" (or "resolver_missing" when none
 * is registered), visibly, in the device's
 * outbox and audit trail. It runs on the thread calling fs_hub_handle(), with
 * the hub's lock held: a call it makes into the same hub is refused with
 * FS_ERR_MISUSE (and a resolver that then fails rejects the write as above,
 * the hub going on with the rest of the request). conflict_json is
 * valid only during the call. */
typedef fs_status
    (*fs_resolver_fn)(void *ctx, const char *conflict_json, char **out_value_json);

/* Registers `fn` (with `ctx`) as the resolver named `name` in the schema;
 * fn == NULL removes it. A later registration under the same name replaces it.
 * @param name borrowed.
 * @return FS_OK; FS_ERR_ARG (NULL or empty name), FS_ERR_CLOSED. Any thread. */
FS_EXTERN fs_status fs_hub_set_resolver(fs_hub *hub, const char *name, fs_resolver_fn fn, void *ctx);

/* Queries the hub's records; same query shape and result as fs_store_query().
 * @return as fs_store_query(). Any thread. */
FS_EXTERN fs_status fs_hub_query(fs_hub *hub, const char *query_json, char **out_rows_json);

/* Lists the audit rows the hub received, ordered by device then audit_id.
 * filter_json may be NULL or {"device_id", "type", "id", "actor", "action",
 * "since", "until", "limit", "desc"}. Rows are shaped as in fs_audit_query()
 * with "server_received_at" set, "outcome" as the hub decided, and
 * "chain_ok": false where the row's hash or its link to the previous row of
 * its device does not verify.
 * @return FS_OK; FS_ERR_ARG, FS_ERR_JSON, FS_ERR_TOO_BIG, FS_ERR_CLOSED. */
FS_EXTERN fs_status fs_hub_audit_query(fs_hub *hub, const char *filter_json, char **out_rows_json);

/* Enrolls a device, or re-enrolls it (a new key is a rotation: requests
 * signed with the old one are refused from now on, its old audit heads still
 * verify; a revoked device becomes active again). enrollment_json:
 *   {"device_id": "tablet-7", "public_key": "<64 hex: fs_store_stats public_key>",
 *    "instance": "<32 hex: fs_store_stats instance_id>"  (optional: otherwise
 *        bound to the first instance that syncs),
 *    "scope": {"task": {"site": "WH-3"}, "item": {}}  (optional: the records the
 *        device may pull, fetch and write: only the types named, each with an
 *        equality filter; null or absent: every record),
 *    "write": true  (optional: false enrolls the device read-only)}
 * The scope is the hub's: a device's request cannot widen it (its own
 * "scope" option only narrows what it pulls).
 * @param out_result_json receives {"device_id", "hub_key": "<64 hex: pin
 *        this on the device>", "rotated": bool}; caller frees.
 * @return FS_OK; FS_ERR_ARG (a member missing or malformed, or a public key
 *         of small order, which anyone can sign for), FS_ERR_JSON,
 *         FS_ERR_TOO_BIG, FS_ERR_SCHEMA (a scope naming unknown types or
 *         fields), FS_ERR_CLOSED, FS_ERR_IO, FS_ERR_FULL, FS_ERR_BUSY.
 * Any thread. */
FS_EXTERN fs_status fs_hub_enroll(fs_hub *hub, const char *enrollment_json, char **out_result_json);

/* Revokes a device: its requests are refused ("revoked") until it is
 * enrolled again. What it synced before stays, with its audit.
 * @return FS_OK; FS_ERR_NOT_FOUND (not enrolled), FS_ERR_ARG, FS_ERR_CLOSED,
 *         FS_ERR_IO, FS_ERR_FULL, FS_ERR_BUSY. Any thread. */
FS_EXTERN fs_status fs_hub_revoke(fs_hub *hub, const char *device_id);

/* Lists the registry: {"devices": [{"device_id", "public_key", "instance",
 * "scope", "write", "state": "active"|"revoked", "enrolled_at", "revoked_at",
 * "last_seen_at", "keys": [{"public_key", "since", "until"}]}],
 * "refusals": [{"at", "device_id", "code", "message"}]} (the latest 100
 * refused requests and out-of-scope writes, newest first).
 * @param out_devices_json caller frees.
 * @return FS_OK; FS_ERR_ARG, FS_ERR_CLOSED, FS_ERR_IO. Any thread. */
FS_EXTERN fs_status fs_hub_devices(fs_hub *hub, char **out_devices_json);

/* Writes a consistent copy of the hub file to `path` while the hub serves
 * (SQLite's online backup: one read transaction's view; other handles and
 * processes keep writing meanwhile). The copy is the hub's next generation
 * (fs_hub_stats "generation"; the running hub keeps its own): a hub restored
 * from it tells its devices, which send again what it lost
 * (docs/OPERATIONS.md "Restoring a hub"). The copy is written as "<path>.partial"
 * and renamed to `path` only once complete, so a crash or a full disk never
 * leaves a half backup under `path`. It is a standalone file (no -wal) that
 * fs_hub_open opens as it is. Blocks this handle for the copy (about a
 * second per few hundred MiB on a 2-core VM). A PostgreSQL hub is backed up
 * by its server (pg_dump, base backups): FS_ERR_ARG; a database restored
 * from one is found at the next open and becomes the next generation.
 * @param path borrowed; must not exist (a backup never overwrites).
 * @return FS_OK; FS_ERR_ARG (NULL or empty path, or it exists, or a
 *         PostgreSQL hub), FS_ERR_IO
 *         (cannot create or rename it), FS_ERR_FULL, FS_ERR_BUSY,
 *         FS_ERR_CLOSED. Any thread. */
FS_EXTERN fs_status fs_hub_backup(fs_hub *hub, const char *path);

/* Reports the hub's counters as a flat JSON object (keys in docs/ABI.md):
 * records, devices, entries applied and rejected (and of those, refused for
 * clock skew), resends refused for a reused key, audit rows, rows refused for
 * a reused audit id, hash failures, chain breaks and gaps, and per type and field "conflicts.<type>.<field>.*"
 * (writes, concurrent, won, lost, merged, rejected, rate) with the overall
 * "conflict_rate", and "storage": "sqlite" or "postgres".
 * @return FS_OK; FS_ERR_ARG, FS_ERR_CLOSED, FS_ERR_IO. */
FS_EXTERN fs_status fs_hub_stats(fs_hub *hub, char **out_stats_json);

#ifdef __cplusplus
}
#endif

#endif /* FIELDSYNC_H */
