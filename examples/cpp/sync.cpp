// sync.cpp — two devices work offline, then sync through an in-process hub,
// with the C++ wrapper (include/fieldsync.hpp): no fs_free, no status checks,
// handles closed when they leave scope. Errors arrive as fieldsync::error.
//
//   make -C examples/cpp run        (or: ./sync [directory])
#include "fieldsync.hpp"

#include <cstdio>
#include <string>

static const char *const SCHEMA = R"({"version": 1, "types": {"task": {
    "fields": {"status": {"type": "string"}, "picked": {"type": "int", "merge": "counter"},
               "tags": {"type": "set"}},
    "required": ["status"]}}})";

// A string member of a flat JSON object; use your project's JSON library.
static std::string member(const std::string &json, const std::string &name) {
    std::string key = "\"" + name + "\":\"";
    size_t at = json.find(key);
    if (at == std::string::npos) return "";
    at += key.size();
    return json.substr(at, json.find('"', at) - at);
}

// Devices enroll once: the hub learns their key, they pin the hub's.
static void enroll(fieldsync::hub &hub, fieldsync::store &device, const std::string &id) {
    std::string stats = device.stats();
    std::string answer = hub.enroll("{\"device_id\":\"" + id + "\",\"public_key\":\"" + member(stats, "public_key") +
                                    "\",\"instance\":\"" + member(stats, "instance_id") + "\"}");
    device.pin_hub(member(answer, "hub_key"));
}

// One sync: send what is due, apply the answer, until nothing is due.
static void sync(fieldsync::store &device, fieldsync::hub &hub) {
    device.set_connectivity(true);
    for (auto p = device.sync_prepare(); p.request; p = device.sync_prepare())
        std::printf("  synced: %s\n", device.sync_receive(hub.handle(*p.request)).c_str());
}

int main(int argc, char **argv) {
    std::string dir = argc > 1 ? argv[1] : ".";
    try {
        fieldsync::hub hub(dir + "/hub.db", SCHEMA);
        fieldsync::store a(dir + "/a.db", SCHEMA, R"({"device_id": "tablet-a"})");
        fieldsync::store b(dir + "/b.db", SCHEMA, R"({"device_id": "tablet-b"})");
        enroll(hub, a, "tablet-a");
        enroll(hub, b, "tablet-b");

        // Offline: both pick from the same task; counters add up, never overwrite.
        a.apply(R"({"action": "create", "actor": "op-1", "type": "task", "id": "T-1", "set": {"status": "open"}})");
        std::printf("tablet-a syncs:\n");
        sync(a, hub);
        std::printf("tablet-b syncs:\n");
        sync(b, hub);
        a.apply(R"({"action": "pick", "actor": "op-1", "type": "task", "id": "T-1", "inc": {"picked": 2}})");
        b.apply(R"({"action": "pick", "actor": "op-2", "type": "task", "id": "T-1", "inc": {"picked": 3},
                    "add": {"tags": ["urgent"]}})");
        std::printf("both sync after working offline:\n");
        sync(a, hub);
        sync(b, hub);
        sync(a, hub);
        std::printf("hub:      %s\n", hub.query(R"({"type": "task"})").c_str());
        std::printf("tablet-a: %s\n", a.get("task", "T-1").value_or("(none)").c_str());
        std::printf("tablet-b: %s\n", b.get("task", "T-1").value_or("(none)").c_str());
        if (!b.get("task", "T-404")) std::printf("T-404: not there (std::nullopt, not an exception)\n");

        try {
            a.apply(R"({"action": "pick", "actor": "op-1", "type": "task", "id": "T-1", "set": {"picked": 9}})");
        } catch (const fieldsync::error &e) {
            std::printf("refused as it should be: %s (status %d)\n", e.what(), e.status());
        }
        std::printf("hub audit rows: %zu bytes of JSON\n", hub.audit_query().size());
        return 0;
    } catch (const fieldsync::error &e) {
        std::fprintf(stderr, "fieldsync: %s\n", e.what());
        return 1;
    }
}
