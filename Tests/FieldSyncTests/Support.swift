// Shared fixtures: a schema with every field type and policy, temp stores and
// a deterministic clock.
@testable import FieldSync
import Glibc

let taskSchema = """
{"version":1,"types":{"task":{"fields":{
  "status":{"type":"string"},"site":{"type":"string","merge":"lww"},
  "picked":{"type":"int","merge":"counter"},"weight":{"type":"float"},
  "urgent":{"type":"bool"},"tags":{"type":"set"},
  "on_hand":{"type":"int","merge":"server"},
  "locked":{"type":"int","merge":"server","device_writes":false},
  "lines":{"type":"json","merge":"custom","resolver":"order_lines"}},
  "required":["status"]}}}
"""

func tempPath(_ name: String = "store.db") -> String {
    var template = Array((testRoot + "/t-XXXXXX").utf8CString)
    let dir = template.withUnsafeMutableBufferPointer { buf in String(cString: mkdtemp(buf.baseAddress!)) }
    return dir + "/" + name
}

/// One folder per test process for every temp store, removed when the
/// process exits (a run made ~100 folders that stayed in /tmp).
let testRoot: String = {
    var template = Array("/tmp/fieldsync-swift-XXXXXX".utf8CString)
    let root = template.withUnsafeMutableBufferPointer { buf in String(cString: mkdtemp(buf.baseAddress!)) }
    // mkdtemp's name holds only [A-Za-z0-9/-]: safe in a shell command.
    testRootRemoval = strdup("rm -rf " + root)
    atexit {
        if let command = testRootRemoval { _ = system(command) }
    }
    return root
}()
nonisolated(unsafe) private var testRootRemoval: UnsafeMutablePointer<CChar>?

final class TestClock: @unchecked Sendable {
    var now: Int64
    init(_ now: Int64 = 1_700_000_000_000) { self.now = now }
}

func openStore(_ path: String = tempPath(), schema: String = taskSchema, options: String? = #"{"durability":"normal","device_id":"dev-a"}"#,
               clock: TestClock? = nil) throws -> Store {
    let store = try Store(path: path, schemaJSON: schema, optionsJSON: options)
    if let clock { store.wallClock = { clock.now } }
    return store
}

func action(_ text: String) throws -> JSON { try JSON.parse(text) }

/// Count of rows in a table, read with plain SQL as a host would.
func rows(_ store: Store, _ table: String) throws -> Int64 {
    try store.db.scalar("SELECT count(*) FROM \(table)") ?? -1
}

/// Exchanges with `hub` until the device has nothing more to send (at most 10
/// rounds), connectivity up first so that a pull is due at once.
func syncUntilIdle(_ store: Store, _ hub: Hub) throws {
    try store.connectivity(up: true)
    for _ in 0..<10 {
        guard let request = try store.prepare().request else { return }
        _ = try store.receive(hub.handle(request))
    }
}
