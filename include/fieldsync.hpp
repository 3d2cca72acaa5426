/*
 * fieldsync.hpp — a header-only C++17 wrapper over fieldsync.h.
 *
 * What it adds to the C interface, and nothing else:
 *  - fieldsync::store and fieldsync::hub own their handle and close it when
 *    they go out of scope (move-only; close() closes early and reports).
 *  - Every string the library returns is copied into a std::string and freed
 *    with fs_free() at once; fieldsync::unique_string holds one when a caller
 *    wants the library's buffer itself.
 *  - A failing call throws fieldsync::error, carrying the fs_status and
 *    fs_last_error()'s message. The exceptions are the documented "nothing
 *    here" answers, returned as values: store::get gives std::nullopt for
 *    FS_ERR_NOT_FOUND, store::sync_prepare a prepared without a request.
 *
 * JSON stays text, as in the C interface: use the JSON library of your
 * project to build and read it. Threads, ownership of arguments and every
 * status a call can fail with are as documented for the C function each
 * method names. A method may be called from any thread; calls on one handle
 * are serialised by the library. Link with -lfieldsync (pkg-config fieldsync).
 */
#ifndef FIELDSYNC_HPP
#define FIELDSYNC_HPP

#include "fieldsync.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace fieldsync {

/* A failed call: status() is the fs_status, what() "<FS_ERR_NAME>: <message>". */
class error : public std::runtime_error {
public:
    error(fs_status status, const std::string &message)
        : std::runtime_error(std::string(fs_status_name(status)) + ": " + message), status_(status) {}
    fs_status status() const noexcept { return status_; }
    /* "FS_ERR_ARG", ...: static storage. */
    const char *name() const noexcept { return fs_status_name(status_); }

private:
    fs_status status_;
};

/* Frees a string the library returned. */
struct free_deleter {
    void operator()(char *p) const noexcept { fs_free(p); }
};
using unique_string = std::unique_ptr<char, free_deleter>;

namespace detail {
inline void check(fs_status status) {
    if (status != FS_OK) throw error(status, fs_last_error());
}

/* Takes ownership of `p` (may be NULL: ""). */
inline std::string take(char *p) {
    unique_string owned(p);
    return p ? std::string(p) : std::string();
}

/* The text of an optional argument: NULL when empty. */
inline const char *or_null(const std::string &s) { return s.empty() ? nullptr : s.c_str(); }

/* A handle closed with `Close` when it goes out of scope; move-only. */
template <typename H, fs_status (*Close)(H *)>
class owned {
public:
    owned() = default;
    ~owned() {
        if (p_) Close(p_);
    }
    owned(const owned &) = delete;
    owned &operator=(const owned &) = delete;
    owned(owned &&other) noexcept : p_(std::exchange(other.p_, nullptr)) {}
    owned &operator=(owned &&other) noexcept {
        if (this != &other) {
            if (p_) Close(p_);
            p_ = std::exchange(other.p_, nullptr);
        }
        return *this;
    }
    /* Where the open call writes the handle. */
    H **out() noexcept { return &p_; }
    H *get() const noexcept { return p_; }
    /* Closes now, reporting a failure (a destructor cannot); twice is fine. */
    void close() {
        if (H *h = std::exchange(p_, nullptr)) check(Close(h));
    }
    /* The library would answer a NULL handle FS_ERR_ARG; a wrapper closed
     * or moved from says so, as a closed C handle does. */
    H *live(const char *what) const {
        if (!p_) throw error(FS_ERR_CLOSED, std::string("the ") + what + " was closed or moved from");
        return p_;
    }

private:
    H *p_ = nullptr;
};
}  // namespace detail

/* The library's version ("MAJOR.MINOR.PATCH") and ABI version. */
inline std::string version() { return fs_version(); }
inline int32_t abi_version() { return fs_abi_version(); }

/* A device store (fs_store_*). */
class store {
public:
    /* fs_store_open. options_json may be empty (defaults). Closed with
     * fs_store_close when it goes out of scope; move-only. */
    store(const std::string &path, const std::string &schema_json, const std::string &options_json = "") {
        detail::check(fs_store_open(path.c_str(), schema_json.c_str(), detail::or_null(options_json), handle_.out()));
    }

    /* fs_store_close, reporting a failure (the destructor cannot). Later
     * calls throw FS_ERR_CLOSED. */
    void close() { handle_.close(); }
    /* The C handle, for calls this wrapper does not cover; still owned here. */
    fs_store *native_handle() const noexcept { return handle_.get(); }

    /* fs_store_apply: the result object. */
    std::string apply(const std::string &action_json) {
        char *out = nullptr;
        detail::check(fs_store_apply(live(), action_json.c_str(), &out));
        return detail::take(out);
    }
    /* fs_store_get: the record, or std::nullopt when there is none (FS_ERR_NOT_FOUND). */
    std::optional<std::string> get(const std::string &type, const std::string &id) {
        char *out = nullptr;
        fs_status status = fs_store_get(live(), type.c_str(), id.c_str(), &out);
        if (status == FS_ERR_NOT_FOUND) return std::nullopt;
        detail::check(status);
        return detail::take(out);
    }
    /* fs_store_query: a JSON array of records. */
    std::string query(const std::string &query_json) { return text(fs_store_query, query_json); }
    /* fs_store_stats. */
    std::string stats() {
        char *out = nullptr;
        detail::check(fs_store_stats(live(), &out));
        return detail::take(out);
    }
    /* fs_store_backup: a consistent copy at `path`, which must not exist. */
    void backup(const std::string &path) { detail::check(fs_store_backup(live(), path.c_str())); }
    /* fs_store_hygiene: the report. */
    std::string hygiene() {
        char *out = nullptr;
        detail::check(fs_store_hygiene(live(), &out));
        return detail::take(out);
    }
    /* fs_fetch_request: a request for the hub. */
    std::string fetch_request(const std::string &refs_json) { return text(fs_fetch_request, refs_json); }

    /* fs_outbox_count. */
    int64_t outbox_count() {
        int64_t n = 0;
        detail::check(fs_outbox_count(live(), &n));
        return n;
    }
    /* fs_outbox_list; filter_json may be empty (every entry). */
    std::string outbox_list(const std::string &filter_json = "") { return optional_text(fs_outbox_list, filter_json); }
    /* fs_outbox_discard. */
    void outbox_discard(const std::string &key) { detail::check(fs_outbox_discard(live(), key.c_str())); }
    /* fs_audit_query; filter_json may be empty. */
    std::string audit_query(const std::string &filter_json = "") { return optional_text(fs_audit_query, filter_json); }

    /* What fs_sync_prepare decided: a request to send, or none and how long
     * until something may be due (-1: nothing will be). */
    struct prepared {
        std::optional<std::string> request;
        int64_t wait_ms = 0;
    };
    prepared sync_prepare() {
        char *out = nullptr;
        prepared p;
        detail::check(fs_sync_prepare(live(), &out, &p.wait_ms));
        if (out) p.request = detail::take(out);
        return p;
    }
    /* fs_sync_receive: the summary. Pass the hub's response as it came: its
     * signature covers every byte. */
    std::string sync_receive(const std::string &response_json) { return text(fs_sync_receive, response_json); }
    /* fs_sync_fail: the last request was not delivered or not answered. */
    void sync_fail(const std::string &reason = "") { detail::check(fs_sync_fail(live(), detail::or_null(reason))); }
    /* fs_sync_connectivity. */
    void set_connectivity(bool up) { detail::check(fs_sync_connectivity(live(), up ? 1 : 0)); }

    /* fs_store_pin_hub: the hub key (64 hex digits) responses must verify with. */
    void pin_hub(const std::string &hub_key) { detail::check(fs_store_pin_hub(live(), hub_key.c_str())); }
    /* fs_store_rotate_key: the new public key. */
    std::string rotate_key() {
        char *out = nullptr;
        detail::check(fs_store_rotate_key(live(), &out));
        return detail::take(out);
    }
    /* fs_store_set_clock; now_ms == nullptr restores the system clock. */
    void set_clock(int64_t (*now_ms)(void *ctx), void *ctx) { detail::check(fs_store_set_clock(live(), now_ms, ctx)); }

private:
    detail::owned<fs_store, fs_store_close> handle_;

    fs_store *live() const { return handle_.live("store"); }
    std::string text(fs_status (*fn)(fs_store *, const char *, char **), const std::string &arg) {
        char *out = nullptr;
        detail::check(fn(live(), arg.c_str(), &out));
        return detail::take(out);
    }
    std::string optional_text(fs_status (*fn)(fs_store *, const char *, char **), const std::string &arg) {
        char *out = nullptr;
        detail::check(fn(live(), detail::or_null(arg), &out));
        return detail::take(out);
    }
};

/* The hub (fs_hub_*). */
class hub {
public:
    /* fs_hub_open. options_json may be empty (defaults). Closed with
     * fs_hub_close when it goes out of scope; move-only. */
    hub(const std::string &path, const std::string &schema_json, const std::string &options_json = "") {
        detail::check(fs_hub_open(path.c_str(), schema_json.c_str(), detail::or_null(options_json), handle_.out()));
    }

    /* fs_hub_close, reporting a failure. */
    void close() { handle_.close(); }
    fs_hub *native_handle() const noexcept { return handle_.get(); }

    /* fs_hub_handle: the response to send back, byte for byte. */
    std::string handle(const std::string &request_json) { return text(fs_hub_handle, request_json); }
    /* fs_hub_query. */
    std::string query(const std::string &query_json) { return text(fs_hub_query, query_json); }
    /* fs_hub_audit_query; filter_json may be empty. */
    std::string audit_query(const std::string &filter_json = "") {
        char *out = nullptr;
        detail::check(fs_hub_audit_query(live(), detail::or_null(filter_json), &out));
        return detail::take(out);
    }
    /* fs_hub_enroll: the answer, with the hub key the device pins. */
    std::string enroll(const std::string &enrollment_json) { return text(fs_hub_enroll, enrollment_json); }
    /* fs_hub_revoke. */
    void revoke(const std::string &device_id) { detail::check(fs_hub_revoke(live(), device_id.c_str())); }
    /* fs_hub_devices. */
    std::string devices() { return text0(fs_hub_devices); }
    /* fs_hub_backup: a consistent copy at `path`, which must not exist. */
    void backup(const std::string &path) { detail::check(fs_hub_backup(live(), path.c_str())); }
    /* fs_hub_stats. */
    std::string stats() { return text0(fs_hub_stats); }
    /* fs_hub_set_clock; now_ms == nullptr restores the system clock. */
    void set_clock(int64_t (*now_ms)(void *ctx), void *ctx) { detail::check(fs_hub_set_clock(live(), now_ms, ctx)); }
    /* fs_hub_set_resolver: the callback's contract is the C one. */
    void set_resolver(const std::string &name, fs_resolver_fn fn, void *ctx) {
        detail::check(fs_hub_set_resolver(live(), name.c_str(), fn, ctx));
    }

private:
    detail::owned<fs_hub, fs_hub_close> handle_;

    fs_hub *live() const { return handle_.live("hub"); }
    std::string text(fs_status (*fn)(fs_hub *, const char *, char **), const std::string &arg) {
        char *out = nullptr;
        detail::check(fn(live(), arg.c_str(), &out));
        return detail::take(out);
    }
    std::string text0(fs_status (*fn)(fs_hub *, char **)) {
        char *out = nullptr;
        detail::check(fn(live(), &out));
        return detail::take(out);
    }
};

}  // namespace fieldsync

#endif /* FIELDSYNC_HPP */
