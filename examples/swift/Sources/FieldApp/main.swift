// A device store and a hub in one process, through the C interface of
// include/fieldsync.h (module CFieldSyncABI): open, apply, enroll, sync, read.
//   cd examples/swift && swift run FieldApp [directory]
import CFieldSyncABI
import Glibc

/// The library's strings are ours to free with fs_free.
func take(_ text: UnsafeMutablePointer<CChar>?) -> String {
    defer { fs_free(text) }
    return text.map { String(cString: $0) } ?? ""
}

struct Failure: Error, CustomStringConvertible {
    let description: String
}

func check(_ status: fs_status, _ what: String) throws {
    guard status == FS_OK else {
        throw Failure(description: "\(what): \(String(cString: fs_status_name(status))): \(String(cString: fs_last_error()))")
    }
}

/// A string member of the flat, compact JSON objects the library writes (keys
/// and ids hex or [A-Za-z0-9_.:-]: nothing escaped). An app would use its JSON parser.
func member(_ json: String, _ key: String) -> String? {
    let parts = json.split(separator: "\"", omittingEmptySubsequences: false)
    for i in parts.indices.dropLast(2) where parts[i] == key && parts[i + 1] == ":" {
        return String(parts[i + 2])
    }
    return nil
}

let schema = #"{"version": 1, "types": {"task": {"fields": {"status": {"type": "string"}, "#
    + #""picked": {"type": "int", "merge": "counter"}}, "required": ["status"]}}}"#

func run(in directory: String) throws {
    var store: OpaquePointer?
    var hub: OpaquePointer?
    var out: UnsafeMutablePointer<CChar>?
    try check(fs_store_open(directory + "/device.db", schema, #"{"device_id": "phone-1"}"#, &store), "fs_store_open")
    defer { fs_store_close(store) }
    try check(fs_hub_open(directory + "/hub.db", schema, nil, &hub), "fs_hub_open")
    defer { fs_hub_close(hub) }

    try check(fs_store_apply(store, #"{"action": "pick_item", "actor": "op-17", "type": "task", "id": "T-1", "#
        + #""set": {"status": "picking"}, "inc": {"picked": 2}}"#, &out), "fs_store_apply")
    _ = take(out)

    // Provisioning: the hub enrolls the store's key and instance, the store pins the hub's key.
    try check(fs_store_stats(store, &out), "fs_store_stats")
    let stats = take(out)
    guard let key = member(stats, "public_key"), let instance = member(stats, "instance_id") else {
        throw Failure(description: "fs_store_stats: no public_key or instance_id in \(stats)")
    }
    try check(fs_hub_enroll(hub, #"{"device_id": "phone-1", "public_key": "\#(key)", "instance": "\#(instance)"}"#, &out),
              "fs_hub_enroll")
    guard let hubKey = member(take(out), "hub_key") else { throw Failure(description: "fs_hub_enroll: no hub_key") }
    try check(fs_store_pin_hub(store, hubKey), "fs_store_pin_hub")

    // The sync loop, with the embedded hub as the transport.
    while true {
        var request: UnsafeMutablePointer<CChar>?
        var wait: Int64 = 0
        try check(fs_sync_prepare(store, &request, &wait), "fs_sync_prepare")
        guard let request else { break }
        var response: UnsafeMutablePointer<CChar>?
        let handled = fs_hub_handle(hub, request, &response)
        fs_free(request)
        try check(handled, "fs_hub_handle")
        let received = fs_sync_receive(store, response, &out)
        fs_free(response)
        try check(received, "fs_sync_receive")
        print("synced: \(take(out))")
    }
    try check(fs_hub_query(hub, #"{"type": "task"}"#, &out), "fs_hub_query")
    print("the hub holds \(take(out))")
    print("libfieldsync \(String(cString: fs_version())), ABI \(fs_abi_version())")
}

do {
    try run(in: CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : ".")
} catch {
    print("FieldApp: \(error)")
    exit(1)
}
