// test_wrapper.cpp — include/fieldsync.hpp, compiled as C++17 against the
// built library: handles close themselves, strings are freed, errors are
// exceptions carrying the status and message, and a store syncs with a hub
// (authenticated) through the wrapper alone. Prints "N passed, N failed".
#include "fieldsync.hpp"

#include <jansson.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace {

const char *const SCHEMA =
    R"({"version": 1, "types": {"task": {"fields": {"status": {"type": "string"},
        "picked": {"type": "int", "merge": "counter"}}, "required": ["status"]}}})";

std::string dir;
int failures_in_test = 0;

#define EXPECT(cond)                                                                   \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            std::fprintf(stderr, "    %s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
            failures_in_test++;                                                        \
        }                                                                              \
    } while (0)

std::string path(const std::string &name) { return dir + "/" + name; }

// A member of a JSON object text, as text ("" when absent).
std::string member(const std::string &json, const char *name) {
    json_error_t err;
    json_t *o = json_loads(json.c_str(), 0, &err);
    std::string out;
    if (json_t *v = json_object_get(o, name)) {
        if (json_is_string(v)) out = json_string_value(v);
        else if (json_is_integer(v)) out = std::to_string(json_integer_value(v));
    }
    json_decref(o);
    return out;
}

// The status a call threw, or FS_OK.
fs_status thrown(const std::function<void()> &call, std::string *what = nullptr) {
    try {
        call();
    } catch (const fieldsync::error &e) {
        if (what) *what = e.what();
        return e.status();
    }
    return FS_OK;
}

void apply_and_get() {
    fieldsync::store s(path("a.db"), SCHEMA, R"({"device_id": "tab-1", "durability": "normal"})");
    std::string result = s.apply(R"({"action": "create", "actor": "op", "type": "task", "id": "T-1",
                                    "set": {"status": "open"}, "inc": {"picked": 2}})");
    EXPECT(member(result, "outbox_key") == "tab-1-1");
    auto record = s.get("task", "T-1");
    EXPECT(record.has_value() && member(*record, "status") == "open" && member(*record, "picked") == "2");
    EXPECT(!s.get("task", "nope").has_value());
    EXPECT(s.outbox_count() == 1);
    EXPECT(s.query(R"({"type": "task", "where": {"status": "open"}})").find("T-1") != std::string::npos);
    EXPECT(s.audit_query().find("create") != std::string::npos);
}

void errors_are_exceptions_with_status_and_message() {
    fieldsync::store s(path("b.db"), SCHEMA);
    std::string what;
    EXPECT(thrown([&] { s.apply("{\"action\": "); }, &what) == FS_ERR_JSON);
    EXPECT(what.rfind("FS_ERR_JSON: ", 0) == 0 && what.find("line 1") != std::string::npos);
    EXPECT(thrown([&] { s.apply(R"({"action": "a", "actor": "op", "type": "nope", "id": "x", "set": {}})"); }) ==
           FS_ERR_SCHEMA);
    EXPECT(thrown([&] { s.outbox_discard("b-404"); }) == FS_ERR_NOT_FOUND);
    EXPECT(s.outbox_count() == 0);  // nothing changed
    // A bad open throws from the constructor: no half-made object.
    EXPECT(thrown([&] { fieldsync::store bad(path("c.db"), "{\"version\": 0}"); }) == FS_ERR_SCHEMA);
    try {
        fieldsync::hub h(path("h.db"), SCHEMA, R"({"durability": "fast"})");
        EXPECT(false);
    } catch (const fieldsync::error &e) {
        EXPECT(e.status() == FS_ERR_ARG && std::string(e.name()) == "FS_ERR_ARG");
    }
}

void handles_close_themselves() {
    fs_store *raw = nullptr;
    {
        fieldsync::store s(path("d.db"), SCHEMA);
        raw = s.native_handle();
        EXPECT(raw != nullptr);
    }
    // The library keeps a closed handle recognisable: the destructor closed it.
    char *out = nullptr;
    EXPECT(fs_store_stats(raw, &out) == FS_ERR_CLOSED && out == nullptr);

    fieldsync::store a(path("e.db"), SCHEMA);
    fieldsync::store b(std::move(a));
    EXPECT(a.native_handle() == nullptr && b.native_handle() != nullptr);
    EXPECT(thrown([&] { a.stats(); }) == FS_ERR_CLOSED);
    b.apply(R"({"action": "a", "actor": "op", "type": "task", "id": "T", "set": {"status": "x"}})");
    b.close();
    EXPECT(thrown([&] { b.outbox_count(); }) == FS_ERR_CLOSED);
    b.close();  // twice is fine

    fieldsync::hub h(path("f.db"), SCHEMA);
    fieldsync::hub h2 = std::move(h);
    EXPECT(thrown([&] { h.stats(); }) == FS_ERR_CLOSED);
    EXPECT(!member(h2.stats(), "public_key").empty());
}

void syncs_with_an_enrolled_device() {
    fieldsync::hub h(path("hub.db"), SCHEMA);
    fieldsync::store s(path("dev.db"), SCHEMA, R"({"device_id": "tab-2", "durability": "normal"})");
    std::string stats = s.stats();
    std::string answer = h.enroll("{\"device_id\": \"tab-2\", \"public_key\": \"" + member(stats, "public_key") +
                                  "\", \"instance\": \"" + member(stats, "instance_id") + "\"}");
    s.pin_hub(member(answer, "hub_key"));
    for (int i = 0; i < 3; i++)
        s.apply(R"({"action": "pick", "actor": "op", "type": "task", "id": "T-9", "set": {"status": "open"}, "inc": {"picked": 1}})");
    s.set_connectivity(true);
    int rounds = 0;
    for (auto p = s.sync_prepare(); p.request && rounds < 10; p = s.sync_prepare(), rounds++)
        s.sync_receive(h.handle(*p.request));
    EXPECT(rounds >= 1 && s.outbox_count() == 0);
    EXPECT(member(s.sync_prepare().request.value_or("{}"), "batch").empty());  // nothing due
    std::string rows = h.query(R"({"type": "task"})");
    EXPECT(rows.find("\"picked\":3") != std::string::npos || rows.find("\"picked\": 3") != std::string::npos);
    // A response re-encoded by someone else no longer verifies.
    s.apply(R"({"action": "pick", "actor": "op", "type": "task", "id": "T-9", "inc": {"picked": 1}})");
    auto p = s.sync_prepare();
    EXPECT(p.request.has_value());
    std::string response = h.handle(*p.request);
    response.insert(1, " ");
    EXPECT(thrown([&] { s.sync_receive(response); }) == FS_ERR_AUTH);
    EXPECT(s.outbox_count() == 1);
    h.revoke("tab-2");
    EXPECT(h.devices().find("tab-2") != std::string::npos);
}

void backups_refuse_an_existing_path() {
    fieldsync::store s(path("g.db"), SCHEMA);
    s.backup(path("g-copy.db"));
    EXPECT(thrown([&] { s.backup(path("g-copy.db")); }) == FS_ERR_ARG);
    fieldsync::store copy(path("g-copy.db"), SCHEMA);
    EXPECT(member(copy.stats(), "public_key") == member(s.stats(), "public_key"));
}

}  // namespace

int main() {
    char tmpl[] = "/tmp/fieldsync-cpp-XXXXXX";
    if (!mkdtemp(tmpl)) return 2;
    dir = tmpl;
    std::printf("fieldsync %s, ABI %d, C++ wrapper tests\n", fieldsync::version().c_str(), fieldsync::abi_version());
    const std::vector<std::pair<const char *, void (*)()>> tests = {
        {"apply_and_get", apply_and_get},
        {"errors_are_exceptions_with_status_and_message", errors_are_exceptions_with_status_and_message},
        {"handles_close_themselves", handles_close_themselves},
        {"syncs_with_an_enrolled_device", syncs_with_an_enrolled_device},
        {"backups_refuse_an_existing_path", backups_refuse_an_existing_path},
    };
    int passed = 0, failed = 0;
    for (const auto &t : tests) {
        failures_in_test = 0;
        try {
            t.second();
        } catch (const std::exception &e) {
            std::fprintf(stderr, "    uncaught: %s\n", e.what());
            failures_in_test++;
        }
        std::printf("%s %s\n", failures_in_test ? "FAIL" : "ok  ", t.first);
        (failures_in_test ? failed : passed)++;
    }
    std::string rm = "rm -rf '" + dir + "'";
    if (std::system(rm.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", dir.c_str());
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
