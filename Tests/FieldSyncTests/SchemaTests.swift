@testable import FieldSync
import Testing

@Suite struct SchemaTests {
    @Test func parsesEveryFieldTypeAndPolicy() throws {
        let schema = try Schema(json: taskSchema)
        let task = try schema.type("task")
        #expect(task.field("picked")?.merge == .counter)
        #expect(task.field("tags")?.merge == .set)
        #expect(task.field("status")?.merge == .lww)
        #expect(task.field("locked")?.deviceWrites == false)
        #expect(task.field("lines")?.resolver == "order_lines")
        #expect(task.required == ["status"])
        #expect(task.fields.map(\.name) == task.fields.map(\.name).sorted())
    }

    /// Each bad schema is refused with a message naming what is wrong.
    @Test(arguments: [
        (#"[]"#, "JSON object"),
        (#"{"types":{"t":{"fields":{"a":{"type":"string"}}}}}"#, "version"),
        (#"{"version":1,"types":{}}"#, "types"),
        (#"{"version":1,"types":{"bad-name":{"fields":{"a":{"type":"string"}}}}}"#, "bad-name"),
        (#"{"version":1,"types":{"fs_x":{"fields":{"a":{"type":"string"}}}}}"#, "reserved"),
        (#"{"version":1,"types":{"t":{"fields":{"id":{"type":"string"}}}}}"#, "t.id"),
        (#"{"version":1,"types":{"t":{"fields":{"a":{"type":"text"}}}}}"#, "t.a"),
        (#"{"version":1,"types":{"t":{"fields":{"a":{"type":"string","merge":"counter"}}}}}"#, "t.a"),
        (#"{"version":1,"types":{"t":{"fields":{"a":{"type":"set","merge":"lww"}}}}}"#, "t.a"),
        (#"{"version":1,"types":{"t":{"fields":{"a":{"type":"json","merge":"custom"}}}}}"#, "resolver"),
        (#"{"version":1,"types":{"t":{"fields":{"a":{"type":"string","mrege":"lww"}}}}}"#, "mrege"),
        (#"{"version":1,"types":{"t":{"fields":{"a":{"type":"string"}},"required":["b"]}}}"#, "\"b\""),
        (#"{"version":1,"types":{"t":{"fields":{"a":{"type":"string"}},"retention":{"keep_days":0}}}}"#, "keep_days"),
        (#"{"version":2,"min_client_version":3,"types":{"t":{"fields":{"a":{"type":"string"}}}}}"#, "min_client_version"),
    ])
    func refusesBadSchemas(text: String, mentions: String) {
        #expect {
            _ = try Schema(json: text)
        } throws: { error in
            guard let e = error as? FieldSyncError, case .schema(let message) = e else { return false }
            return message.contains(mentions)
        }
    }

    @Test func malformedSchemaIsAJSONError() {
        #expect(throws: FieldSyncError.self) { _ = try Schema(json: "{\"version\": 1,") }
        do { _ = try Schema(json: "{\"version\": 1,") } catch { #expect(error.status == 2) }
    }
}
