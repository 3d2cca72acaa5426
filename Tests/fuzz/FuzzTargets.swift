// libFuzzer entry point, compiled together with the engine's sources (see
// `make fuzz`). One input drives the three places untrusted bytes enter:
// an action, a hub request and a sync response. Any trap is a finding;
// errors thrown as FieldSyncError are the expected outcome for junk. Every
// input is also checked against the JSON rules of docs/ABI.md (a trap if the
// library reads it otherwise).
import Glibc

nonisolated(unsafe) var fuzzStore: Store?
nonisolated(unsafe) var fuzzHub: Hub?

let fuzzSchema = """
{"version":1,"types":{"task":{"fields":{"status":{"type":"string"},"picked":{"type":"int","merge":"counter"},
"tags":{"type":"set"},"on_hand":{"type":"int","merge":"server"},"w":{"type":"float"},"ok":{"type":"bool"},
"lines":{"type":"json","merge":"custom","resolver":"r"}},"required":["status"]}}}
"""

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    if fuzzStore == nil {
        let dir = "/tmp/fieldsync-fuzz-\(getpid())"
        mkdir(dir, 0o700)
        fuzzStore = try? Store(path: dir + "/device.db", schemaJSON: fuzzSchema, optionsJSON: #"{"durability":"normal","device_id":"fz"}"#)
        fuzzHub = try? Hub(path: dir + "/hub.db", schemaJSON: fuzzSchema, optionsJSON: #"{"durability":"normal"}"#)
        fuzzHub?.resolvers["r"] = { conflict in .success(conflict["incoming"] ?? .null) }
    }
    guard let store = fuzzStore, let hub = fuzzHub, size > 0 else { return 0 }
    let target = data[0] % 4
    let text = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let parsed = try? JSON.parse(bytes: data + 1, count: size - 1, what: "fuzz input")
    // What jansson accepts and refuses must be what docs/ABI.md says
    // (DocumentedJSONRules.swift): depth, NUL, "\\u0000", duplicate keys.
    let library = parsed.map(DocumentedReading.value) ?? .refused("")
    let documented = documentedReading(text)
    if !agrees(library, documented) {
        fatalError("JSON rules broken on \(text): library \(library), docs/ABI.md \(documented)")
    }
    guard let value = parsed else { return 0 }
    switch target {
    case 0: _ = try? store.apply(value)
    case 1:
        _ = try? hub.handle(value)
        // The signed form's pieces, read before any signature is checked.
        _ = text.withUnsafeBytes { Wire.Signature.split($0) }
        _ = try? Wire.Credentials(value["auth"])
    case 2: _ = try? store.receive(value)
    default: _ = try? store.query(value); _ = try? Schema(json: value)
    }
    // Keep the store moving so responses can refer to real batches.
    if let request = try? store.prepare().request, let response = try? hub.handle(request) {
        _ = try? store.receive(response)
    }
    return 0
}
