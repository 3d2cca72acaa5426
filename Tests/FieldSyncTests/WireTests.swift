// The protocol's codec (Sources/FieldSync/Wire): what is written reads back
// to the same values, protocol 2 loses nothing protocol 1 carried, and the
// hub still answers protocol 1 as it did.
@testable import FieldSync
import Testing

@Suite struct WireTests {
    static func entry(_ seq: Int64, _ id: String, hlc: Int64, ops: String) throws -> Wire.Entry {
        var e = Wire.Entry(key: "dev-7f3a-\(seq)", seq: seq, type: "task", id: id)
        e.actor = "op-17"
        e.hlc = hlc
        e.schemaVersion = 1
        e.shadowSeq = 0
        e.cursor = 1790
        e.ops = try JSON.parse(ops)
        return e
    }

    static func row(_ seq: Int64, _ id: String, hlc: Int64, keys: [String]? = nil) -> AuditRow {
        AuditRow(auditId: seq, deviceId: "dev-7f3a", actor: "op-17", action: "pick_item", type: "task", id: id,
                 input: .object(["scan": .string("4006381333931"), "qty": .double(1.5)]), deviceTime: -5, hlc: hlc,
                 outboxKeys: keys ?? ["dev-7f3a-\(seq)"], prevHash: String(repeating: "\((seq - 1) % 10)", count: 64),
                 hash: String(repeating: "\(seq % 10)", count: 64))
    }

    static func request(proto: Int64) throws -> Wire.Request {
        var r = Wire.Request(device: "dev-7f3a", batch: "dev-7f3a-b42")
        r.proto = proto
        r.schemaVersion = 2
        r.cursor = Wire.maxSeq
        r.limit = 10_000
        r.scope = .object(["task": .object(["site": .string("WH-3")])])
        var first = try entry(118, "T-1", hlc: 117_676_858_345_455_616,
                              ops: #"{"set":{"status":"picked","weight":-0.0},"inc":{"picked":1},"add":{"tags":["urgent",7]},"remove":{"tags":["late"]}}"#)
        first.base = ["on_hand": .int(1502)]
        first.baseValues = ["on_hand": .int(3)]
        var second = try entry(119, "T-\u{e9}\"\\", hlc: Int64.min, ops: #"{"delete":true}"#)
        second.shadowSeq = nil
        second.schemaVersion = nil
        r.entries = [first, second]
        // 117 travels without its entry; 119 names another key, so it
        // travels whole in protocol 2 as well.
        r.audit = [row(117, "T-0", hlc: 5), row(118, "T-1", hlc: 117_676_858_345_455_616),
                   row(119, "T-\u{e9}\"\\", hlc: Int64.min, keys: ["dev-7f3a-119", "dev-7f3a-120"])]
        return r
    }

    static func reread(_ bytes: [UInt8]) throws -> JSON { try JSON.parse(String(decoding: bytes, as: UTF8.self)) }

    @Test(arguments: [1, 2] as [Int64])
    func requestsReadBackToTheSameValues(proto: Int64) throws {
        let request = try WireTests.request(proto: proto)
        let text = request.bytes
        #expect(try Wire.Request(WireTests.reread(text)) == request)
        // Protocol 2 sends the audit row of an entry once: only there its members are missing.
        let rows = try WireTests.reread(text)["audit"]?.array ?? []
        #expect(rows.map { $0["type"] == nil } == [false, proto == 2, false])
        // ... and a row following its predecessor leaves out that row's hash.
        #expect(rows.map { $0["prev_hash"] == nil } == [false, proto == 2, proto == 2])
        var fetch = Wire.Request(device: "dev-7f3a", batch: "dev-7f3a-b43")
        fetch.proto = proto
        fetch.pull = false
        fetch.fetch = [Wire.Ref(type: "task", id: "T-1"), Wire.Ref(type: "task", id: "")]
        #expect(try Wire.Request(WireTests.reread(fetch.bytes)) == fetch)
    }

    @Test func theCompactFormIsShorterAndCarriesTheSameRows() throws {
        let full = try WireTests.request(proto: 1), compact = try WireTests.request(proto: 2)
        #expect(compact.bytes.count < full.bytes.count)
        let a = try Wire.Request(WireTests.reread(full.bytes)), b = try Wire.Request(WireTests.reread(compact.bytes))
        #expect(a.audit == b.audit && a.entries == b.entries)
    }

    @Test func aCompactRowWithoutItsEntryIsRefused() throws {
        var request = try WireTests.reread(WireTests.request(proto: 2).bytes).object ?? [:]
        request["entries"] = .array([])
        #expect(throws: FieldSyncError.self) { _ = try Wire.Request(.object(request)) }
        // A row chained to the row before it cannot travel without that row.
        var unchained = try WireTests.reread(WireTests.request(proto: 2).bytes).object ?? [:]
        unchained["audit"] = .array(Array((unchained["audit"]?.array ?? []).dropFirst()))
        #expect(throws: FieldSyncError.self) { _ = try Wire.Request(.object(unchained)) }
        // Protocol 1 never takes members from an entry.
        var old = try WireTests.reread(WireTests.request(proto: 2).bytes).object ?? [:]
        old["protocol"] = .int(1)
        #expect(throws: FieldSyncError.self) { _ = try Wire.Request(.object(old)) }
    }

    static func state() -> RecordState {
        var s = RecordState()
        s.fields = ["status": .string("picked"), "picked": .int(4), "tags": .array([.string("urgent"), .int(7)]),
                    "weight": .double(0.1), "lines": .object(["n": .array([.null, .bool(true)])])]
        s.stamps = ["status": Stamp(hlc: 117_676_858_345_455_616, device: "dev-7f3a"), "weight": Stamp(hlc: -1, device: "d\u{1}\u{7f}")]
        s.versions = ["status": 1835, "picked": Wire.maxSeq, "tags": 0]
        s.deletedAt = Stamp(hlc: 3, device: "dev-2")
        return s
    }

    @Test func responsesReadBackToTheSameValues() throws {
        var r = Wire.Response(proto: 2, device: "dev-7f3a", batch: "dev-7f3a-b42", serverTime: 1_764_075_003_000)
        var applied = Wire.Result(key: "dev-7f3a-118", status: "applied")
        applied.serverSeq = 1835
        applied.resolutions = ["status": .string("won")]
        var duplicate = Wire.Result(key: "dev-7f3a-119", status: "duplicate")
        duplicate.outcome = "applied"
        duplicate.serverSeq = Wire.maxSeq
        var rejected = Wire.Result(key: "dev-7f3a-120", status: "rejected")
        rejected.reason = "conflict"
        rejected.detail = .object(["field": .string("on_hand"), "value": .int(1490)])
        rejected.state = WireTests.state()
        rejected.recordSeq = 0
        var retry = Wire.Result(key: "dev-7f3a-121", status: "retry")
        retry.reason = "an earlier change of task/T-1 is still to be applied"
        r.results = [applied, duplicate, rejected, retry]
        r.auditAcks = [(118, 1_764_075_003_000), (119, 0)]
        r.auditRefused = [(117, "audit_id_reused")]
        r.own = [Wire.Own(type: "task", id: "T-1", seq: 1835, prior: 1790)]
        r.fetched = [Wire.Record(type: "task", id: "T-9", seq: 1, state: RecordState(absent: ()))]
        r.missing = [Wire.Ref(type: "task", id: "T-404")]
        r.deferred = [Wire.Ref(type: "task", id: "T-10")]
        r.changes = [Wire.Record(type: "task", id: "T-2", seq: 1836, state: WireTests.state())]
        r.cursor = 1836
        r.more = true
        #expect(try Wire.Response(JSON.parse(r.json.text)) == r)

        let refused = Wire.Response.error("protocol_unsupported", "this hub speaks protocol 2; the request uses 3", proto: 2,
                                          device: "dev-7f3a", batch: "dev-7f3a-b42", serverTime: 7)
        #expect(try Wire.Response(JSON.parse(refused.json.text)) == refused)
    }

    /// Protocol 2 acknowledges consecutive rows received at one time in one
    /// object; protocol 1 one object a row. Both read back to the same rows.
    @Test(arguments: [1, 2] as [Int64])
    func auditAcknowledgementsTravelAsRunsInProtocolTwo(proto: Int64) throws {
        var r = Wire.Response(proto: proto, device: "dev-7f3a", batch: "dev-7f3a-b42", serverTime: 7)
        r.auditAcks = (1...500).map { ($0, 7) } + [(501, 8), (503, 8), (504, 8), (2, 7)]
        let acks = r.json["audit_acks"]?.array ?? []
        #expect(acks.count == (proto == 1 ? 504 : 4))
        if proto == 2 {
            #expect(acks.first == .object(["audit_id": .int(1), "server_received_at": .int(7), "through": .int(500)]))
            #expect(acks[1] == .object(["audit_id": .int(501), "server_received_at": .int(8)]))
        }
        #expect(try Wire.Response(JSON.parse(r.json.text)) == r)
        // A protocol-1 answer is read as protocol 1 was: one row an object.
        let one = #"{"protocol":1,"device_id":"d","batch":"d-b1","server_time":7,"audit_acks":[{"audit_id":3,"through":9,"server_received_at":7}]}"#
        #expect(try Wire.Response(JSON.parse(one)).auditAcks.map(\.auditId) == [3])
    }

    /// A run cannot make a short text a long list: a response names at most
    /// Wire.maxAckedRows rows, however it writes them.
    @Test func aResponseAcknowledgesAtMostTheRowsARequestCarries() throws {
        func acks(_ runs: String) -> String {
            #"{"protocol":2,"device_id":"d","batch":"d-b1","server_time":7,"audit_acks":[\#(runs)]}"#
        }
        let most = #"{"audit_id":1,"through":\#(Wire.maxAckedRows),"server_received_at":7}"#
        #expect(try Wire.Response(JSON.parse(acks(most))).auditAcks.count == Int(Wire.maxAckedRows))
        let more = #"{"audit_id":1,"through":\#(Wire.maxAckedRows - 1),"server_received_at":7},{"audit_id":9,"through":10,"server_received_at":7}"#
        #expect(throws: FieldSyncError.self) { _ = try Wire.Response(JSON.parse(acks(more))) }
        let backwards = #"{"audit_id":5,"through":4,"server_received_at":7}"#
        #expect(throws: FieldSyncError.self) { _ = try Wire.Response(JSON.parse(acks(backwards))) }
    }

    /// A record state in a response is read in one place, every member checked.
    @Test(arguments: [
        #"{"versions":{"a":-1}}"#, #"{"versions":{"a":9007199254740992}}"#, #"{"versions":{"a":"1"}}"#,
        #"{"stamps":{"a":[1]}}"#, #"{"stamps":{"a":["1","d"]}}"#, #"{"stamps":{"a":[1,2]}}"#, #"{"deleted":1}"#,
        #"{"deleted_at":[1]}"#, #"{"fields":[]}"#,
    ])
    func aResponseWithAStateOutOfRangeIsRefused(state: String) throws {
        let change = #"{"protocol":2,"device_id":"d","batch":"d-b1","changes":[{"type":"task","id":"T","seq":1,"state":\#(state)}]}"#
        #expect(throws: FieldSyncError.self) { _ = try Wire.Response(JSON.parse(change)) }
        let rejected = #"{"protocol":2,"device_id":"d","batch":"d-b1","results":[{"key":"d-1","status":"rejected","record_seq":1,"state":\#(state)}]}"#
        #expect(throws: FieldSyncError.self) { _ = try Wire.Response(JSON.parse(rejected)) }
        let fine = #"{"protocol":2,"device_id":"d","batch":"d-b1","changes":[{"type":"task","id":"T","seq":1,"state":{"versions":{"a":0},"stamps":{"a":[-1,"d"]}}}]}"#
        #expect(try Wire.Response(JSON.parse(fine)).changes?.first?.state.versions == ["a": 0])
    }

    @Test func recordStatesReadBackAsTheyTravelAndAsTheyAreStored() throws {
        let state = WireTests.state()
        #expect(RecordState(json: try JSON.parse(state.shadowJSON.text)) == state)
        #expect(RecordState(json: try JSON.parse(String(decoding: state.text(tags: false), as: UTF8.self))) == state)
        var hub = state
        hub.tags = ["tags": [JSONElement(.string("urgent"))!: [AddTag(seq: 3, device: "dev-7f3a")],
                             JSONElement(.int(7))!: [AddTag(seq: 4, device: "a"), AddTag(seq: 5, device: "b")]]]
        #expect(RecordState(json: try JSON.parse(String(decoding: hub.text(tags: true), as: UTF8.self))) == hub)
    }

    /// What a device prepares reads back to what its outbox and audit trail
    /// hold, in either protocol.
    @Test func aPreparedRequestReadsBackToTheStoredEntriesAndRows() throws {
        var decoded: [Wire.Request] = []
        for proto in [1, 2] {
            let clock = TestClock()
            let store = try openStore(options: #"{"durability":"normal","device_id":"dev-a","protocol":\#(proto)}"#, clock: clock)
            _ = try store.apply(action(#"{"action":"open","actor":"op-1","type":"task","id":"T-1","set":{"status":"open","weight":2.5},"add":{"tags":["a"]},"input":{"scan":"x"}}"#))
            _ = try store.apply(action(#"{"action":"pick","actor":"op-2","type":"task","id":"T-1","inc":{"picked":2}}"#))
            _ = try store.apply(action(#"{"action":"close","actor":"op-1","type":"task","id":"T-1","delete":true}"#))
            let text = try #require(try store.prepareText().request)
            let request = try Wire.Request(WireTests.reread(text))
            #expect(request.proto == proto)
            #expect(request.audit == (try store.audit(.null)))
            let outbox = try store.outboxList(.null).array ?? []
            #expect(request.entries.map(\.key) == outbox.compactMap { $0["key"]?.string })
            #expect(request.entries.map(\.hlc) == outbox.map { $0["hlc"]?.int })
            #expect(request.entries.map(\.ops) == outbox.map { $0["ops"] ?? .null })
            #expect(request.entries.map(\.actor) == outbox.map { $0["actor"]?.string ?? "" })
            decoded.append(request)
        }
        #expect(decoded[0].entries == decoded[1].entries && decoded[0].audit == decoded[1].audit)
    }

    /// A request written by hand in protocol 1, as devices of the previous
    /// release send it, gets the answer the previous release gave (captured
    /// from it, commit 44794ef).
    @Test func aProtocolOneRequestGetsTheAnswerItGotBefore() throws {
        let hub = try Hub(path: tempPath("hub.db"), schemaJSON: taskSchema, optionsJSON: nil)
        hub.wallClock = { 1_795_606_400_000 }
        let hlc: Int64 = 117_676_858_345_455_616
        let request = """
            {"protocol":1,"device_id":"dev-7f3a","schema_version":1,"batch":"dev-7f3a-b42","cursor":0,"pull":true,"limit":1000,
             "entries":[
              {"key":"dev-7f3a-1","seq":1,"type":"task","id":"T-1","hlc":\(hlc),"schema_version":1,"cursor":0,"actor":"op-17",
               "ops":{"set":{"status":"picked"},"inc":{"picked":1},"add":{"tags":["urgent"]}},"base":{}},
              {"key":"dev-7f3a-2","seq":2,"type":"task","id":"T-1","hlc":\(hlc + 1),"schema_version":1,"cursor":0,"actor":"op-17",
               "ops":{"set":{"on_hand":1490}},"base":{"on_hand":1833}},
              {"key":"dev-7f3a-3","seq":3,"type":"task","id":"T-2","hlc":\(hlc + 2),"schema_version":1,"cursor":0,"actor":"op-17",
               "ops":{"set":{"picked":1}},"base":{}}],
             "audit":[
              {"audit_id":1,"actor":"op-17","action":"pick_item","type":"task","id":"T-1","input":{"scan":"4006381333931"},
               "device_time":1764075000123,"hlc":\(hlc),"outbox_keys":["dev-7f3a-1"],
               "prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"04b2"}]}
            """
        let answer = try hub.handle(JSON.parse(request)).text
        let before = #"{"audit_acks":[{"audit_id":1,"server_received_at":1795606400000}],"batch":"dev-7f3a-b42","changes":[{"id":"T-1","seq":1,"state":{"deleted":false,"fields":{"picked":1,"status":"picked","tags":["urgent"]},"stamps":{"picked":[117676858345455616,"dev-7f3a"],"status":[117676858345455616,"dev-7f3a"],"tags":[117676858345455616,"dev-7f3a"]},"versions":{"picked":1,"status":1,"tags":1}},"type":"task"}],"cursor":1,"device_id":"dev-7f3a","more":false,"protocol":1,"results":[{"key":"dev-7f3a-1","server_seq":1,"status":"applied"},{"detail":{"field":"on_hand","value":null,"version":null},"key":"dev-7f3a-2","reason":"conflict","record_seq":1,"state":{"deleted":false,"fields":{"picked":1,"status":"picked","tags":["urgent"]},"stamps":{"picked":[117676858345455616,"dev-7f3a"],"status":[117676858345455616,"dev-7f3a"],"tags":[117676858345455616,"dev-7f3a"]},"versions":{"picked":1,"status":1,"tags":1}},"status":"rejected"},{"key":"dev-7f3a-3","reason":"invalid: field 'task.picked' is a counter: change it with \"inc\", not \"set\"","status":"rejected"}],"server_time":1795606400000}"#
        #expect(answer == before)
    }

    /// The hub checks an entry's ops by the rules fs_store_apply checks an
    /// action's by: the same refusals, word for word.
    @Test(arguments: [
        #"{"set":{"picked":1}}"#, #"{"set":{"tags":["a"]}}"#, #"{"set":{"status":null}}"#, #"{"set":{"nope":1}}"#,
        #"{"set":{"locked":1}}"#, #"{"inc":{"status":1}}"#, #"{"inc":{"picked":1.5}}"#, #"{"add":{"status":["a"]}}"#,
        #"{"add":{"tags":"a"}}"#, #"{"set":{"urgent":"yes"}}"#,
    ])
    func theHubRefusesTheOpsApplyRefuses(ops: String) throws {
        let store = try openStore()
        var action = try JSON.parse(ops).object ?? [:]
        for (k, v) in ["action": "a", "actor": "op", "type": "task", "id": "T-1"] { action[k] = .string(v) }
        var refusal = ""
        do { _ = try store.apply(.object(action)) } catch { refusal = error.message }
        #expect(!refusal.isEmpty)
        let hub = try Hub(path: tempPath("hub.db"), schemaJSON: taskSchema, optionsJSON: nil)
        hub.wallClock = { 1_700_000_000_000 }
        let request = #"{"protocol":2,"device_id":"dev-a","batch":"dev-a-b1","schema_version":1,"pull":false,"entries":[{"key":"dev-a-1","seq":1,"type":"task","id":"T-1","hlc":1,"schema_version":1,"ops":\#(ops)}]}"#
        let result = try hub.handle(JSON.parse(request))["results"]?.array?.first
        #expect(result?["status"] == .string("rejected"))
        #expect(result?["reason"] == .string("invalid: " + refusal))
    }

    /// A device newer than the hub is answered protocol_unsupported whatever
    /// its request holds: the hub cannot know a newer protocol's rules.
    @Test func aNewerProtocolIsAnsweredUnsupportedWhateverItHolds() throws {
        let hub = try Hub(path: tempPath("hub.db"), schemaJSON: taskSchema, optionsJSON: nil)
        let answer = try hub.handle(JSON.parse(#"{"protocol":3,"device_id":"dev-a","batch":"dev-a-b1","entries":[{"key":"dev-a-1"}],"audit":[{"audit_id":1}]}"#))
        #expect(answer["error"]?["code"] == .string("protocol_unsupported"))
        #expect(answer["protocol"] == .int(2))
    }

    /// A hub older than the device answers protocol_unsupported: the device
    /// says which option makes it speak the hub's protocol.
    @Test func aDeviceAheadOfItsHubIsToldToSpeakProtocolOne() throws {
        let store = try openStore()
        _ = try store.apply(action(#"{"action":"a","actor":"op","type":"task","id":"T-1","set":{"status":"open"}}"#))
        let request = try #require(try store.prepare().request)
        let answer = try JSON.parse(#"{"protocol":1,"device_id":"dev-a","batch":\#(request["batch"]?.text ?? ""),"server_time":1,"error":{"code":"protocol_unsupported","message":"this hub speaks protocol 1; the request uses 2"}}"#)
        var message = ""
        do { _ = try store.receive(answer) } catch { message = error.message }
        #expect(message.contains(#""protocol": 1"#), "\(message)")
        #expect(try store.outboxCount() == 1)
        // The option is an integer option like the others.
        for bad in ["0", "3", "\"2\"", "1.5"] {
            #expect(throws: FieldSyncError.self) {
                _ = try openStore(options: #"{"device_id":"dev-b","protocol":\#(bad)}"#)
            }
        }
    }
}
