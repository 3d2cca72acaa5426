// Authenticated sync through the text path the C door takes (Hub.handle(text:),
// Store.receive(text:)): enrollment, refusals, signed responses, and a store
// restored from an older copy recovering by itself (docs/SECURITY.md).
@testable import FieldSync
import Glibc
import Testing

@Suite struct AuthTests {
    /// prepare -> handle -> receive over the signed texts until nothing is due.
    @discardableResult
    func syncText(_ store: Store, _ hub: Hub, rounds: Int = 10) throws -> [JSON] {
        try store.connectivity(up: true)
        var summaries: [JSON] = []
        for _ in 0..<rounds {
            guard let request = try store.prepareText().request else { break }
            let response = try request.withUnsafeBytes { (r) throws(FieldSyncError) -> [UInt8] in try hub.handle(text: r) }
            summaries.append(try response.withUnsafeBytes { (r) throws(FieldSyncError) -> JSON in try store.receive(text: r) })
        }
        return summaries
    }

    func enroll(_ store: Store, _ hub: Hub, _ extra: JSONObject = [:]) throws {
        var e: JSONObject = ["device_id": .string(store.deviceId), "public_key": .string(store.publicKey),
                             "instance": .string(store.instanceId)]
        for (k, v) in extra { e[k] = v }
        let answer = try hub.enroll(.object(e))
        try store.pinHub(#require(answer["hub_key"]?.string))
    }

    func picked(_ hub: Hub, _ id: String = "T-1") throws -> Int64? {
        try hub.query(JSON.parse(#"{"type":"task","where":{"id":"\#(id)"}}"#)).array?.first?["picked"]?.int
    }

    func inc(_ store: Store, _ n: Int = 1) throws {
        for _ in 0..<n { _ = try store.apply(action(#"{"type":"task","id":"T-1","actor":"op","action":"pick","inc":{"picked":1}}"#)) }
    }

    @Test func enrolledDeviceSyncsAndEveryResponseIsSigned() throws {
        let hub = try Hub(path: tempPath("hub.db"), schemaJSON: taskSchema, optionsJSON: nil)
        let store = try openStore()
        try enroll(store, hub)
        _ = try store.apply(action(#"{"type":"task","id":"T-1","actor":"op","action":"create","set":{"status":"open"}}"#))
        try inc(store, 2)
        try syncText(store, hub)
        #expect(try picked(hub) == 2)
        #expect(try store.outboxCount() == 0)
        #expect(try hub.stats()["audit_heads"]?.int ?? 0 >= 1)
        #expect(try hub.stats()["auth"]?.string == "on")
    }

    @Test func anUnenrolledStoreClaimingAnEnrolledIdIsRefusedAndTheRealDeviceLosesNothing() throws {
        let hub = try Hub(path: tempPath("hub.db"), schemaJSON: taskSchema, optionsJSON: nil)
        let real = try openStore(options: #"{"durability":"normal","device_id":"tablet-7"}"#)
        try enroll(real, hub)
        _ = try real.apply(action(#"{"type":"task","id":"T-1","actor":"op","action":"create","set":{"status":"open"}}"#))
        try inc(real, 3)
        // Another store given the same id and seqs, with its own key: refused
        // before any of its entries is decided.
        let impostor = try openStore(options: #"{"durability":"normal","device_id":"tablet-7"}"#)
        try impostor.pinHub(hub.publicKey)
        _ = try impostor.apply(action(#"{"type":"task","id":"T-1","actor":"x","action":"create","set":{"status":"open"}}"#))
        for _ in 0..<4 { _ = try impostor.apply(action(#"{"type":"task","id":"T-1","actor":"x","action":"steal","inc":{"picked":-100}}"#)) }
        let request = try #require(try impostor.prepareText().request)
        let response = try request.withUnsafeBytes { (r) throws(FieldSyncError) -> [UInt8] in try hub.handle(text: r) }
        #expect(throws: FieldSyncError.self) { _ = try response.withUnsafeBytes { (r) throws(FieldSyncError) -> JSON in try impostor.receive(text: r) } }
        #expect(try hub.stats()["auth_refused_bad_signature"]?.int == 1)
        // The refused device says why and backs off instead of resending at once.
        #expect(try impostor.stats()["sync_state"]?.string == "auth_refused")
        #expect(try impostor.prepareText().request == nil)
        try syncText(real, hub)
        #expect(try picked(hub) == 3)
        #expect(try hub.stats()["entries_applied"]?.int == 4)
    }

    @Test func aChangedByteInASignedRequestIsRefusedAndChangesNothing() throws {
        let hub = try Hub(path: tempPath("hub.db"), schemaJSON: taskSchema, optionsJSON: nil)
        let store = try openStore()
        try enroll(store, hub)
        _ = try store.apply(action(#"{"type":"task","id":"T-1","actor":"op","action":"create","set":{"status":"open"}}"#))
        try inc(store)
        var request = try #require(try store.prepareText().request)
        // "picked":1 becomes "picked":9 — a well-formed request, not the signed one.
        let text = String(decoding: request, as: UTF8.self)
        request = Array(text.replacingFirst("\"picked\":1", with: "\"picked\":9").utf8)
        #expect(request != Array(text.utf8))
        let response = try request.withUnsafeBytes { (r) throws(FieldSyncError) -> [UInt8] in try hub.handle(text: r) }
        #expect(String(decoding: response, as: UTF8.self).contains("\"bad_signature\""))
        #expect(try hub.stats()["entries_applied"]?.int == 0)
    }

    @Test func aForgedResponseIsRefusedAndTheOutboxIsKept() throws {
        let hub = try Hub(path: tempPath("hub.db"), schemaJSON: taskSchema, optionsJSON: nil)
        let other = try Hub(path: tempPath("other.db"), schemaJSON: taskSchema, optionsJSON: #"{"auth":"off"}"#)
        let store = try openStore()
        try enroll(store, hub)
        _ = try store.apply(action(#"{"type":"task","id":"T-1","actor":"op","action":"create","set":{"status":"open"}}"#))
        let request = try #require(try store.prepareText().request)
        // Answered by a hub the device did not pin (its signature is valid, its key is not the one).
        let forged = try request.withUnsafeBytes { (r) throws(FieldSyncError) -> [UInt8] in try other.handle(text: r) }
        #expect(throws: FieldSyncError.auth("the response's signature does not verify with the pinned hub key; nothing was changed")) {
            _ = try forged.withUnsafeBytes { (r) throws(FieldSyncError) -> JSON in try store.receive(text: r) }
        }
        // Unsigned: the same text without its signature.
        let unsigned = Array(forged.dropLast(Wire.Signature.suffixBytes)) + [UInt8(ascii: "}")]
        #expect(throws: FieldSyncError.self) { _ = try unsigned.withUnsafeBytes { (r) throws(FieldSyncError) -> JSON in try store.receive(text: r) } }
        #expect(try store.outboxCount() == 1)
    }

    /// A tablet that created T-1, made `before` increments and synced; its
    /// file copied (the backup); then `after` more increments synced before
    /// it was lost. Returns its image, restored from the copy and opened.
    func restoredImage(_ hub: Hub, options: String = #"{"durability":"normal","device_id":"dev-a"}"#,
                       before: Int, after: Int) throws -> Store {
        let path = tempPath("tablet.db")
        var store: Store? = try openStore(path, options: options)
        try enroll(try #require(store), hub)
        _ = try store?.apply(action(#"{"type":"task","id":"T-1","actor":"op","action":"create","set":{"status":"open"}}"#))
        try inc(try #require(store), before)
        try syncText(try #require(store), hub)
        store?.close()
        store = nil
        #expect(system("cp \(path) \(path).bak") == 0)
        store = try openStore(path, options: options)
        try inc(try #require(store), after)
        try syncText(try #require(store), hub)
        store?.close()
        store = nil
        #expect(system("cp \(path).bak \(path)") == 0)
        return try openStore(path, options: options)
    }

    @Test func aStoreRestoredFromAnOlderCopyRecoversAboveTheHubAndLosesNothing() throws {
        let hub = try Hub(path: tempPath("hub.db"), schemaJSON: taskSchema, optionsJSON: nil)
        // Synced at seq 2 when copied, seqs 3, 4, 5 synced before it was lost.
        let restored = try restoredImage(hub, before: 1, after: 3)
        #expect(try picked(hub) == 4)
        try inc(restored, 2)                     // seqs 3 and 4 again, other actions
        try syncText(restored, hub)
        #expect(try picked(hub) == 6)            // 1 + 3 + 2: every action once
        #expect(try restored.outboxCount() == 0)
        let stats = try hub.stats()
        #expect(stats["audit_chain_breaks"]?.int == 0)
        #expect(stats["audit_gaps"]?.int == 0)
        #expect(stats["devices_restored"]?.int ?? 0 >= 1)
        #expect(try restored.stats()["restored_recoveries"]?.int == 1)
        #expect(try restored.stats()["last_seq"]?.int == 7)
        // And it goes on above them.
        try inc(restored)
        try syncText(restored, hub)
        #expect(try picked(hub) == 7)
        #expect(try hub.stats()["audit_chain_breaks"]?.int == 0)
    }

    /// The restored copy's backlog is larger than a batch: the entries not yet
    /// sent when it learns it is behind are renumbered too, and every
    /// increment reaches the hub once.
    @Test func aRestoredCopyWithABacklogLargerThanABatchAppliesEachActionOnce() throws {
        let hub = try Hub(path: tempPath("hub.db"), schemaJSON: taskSchema, optionsJSON: nil)
        // seqs 2...5 at the hub after the copy
        let restored = try restoredImage(hub, options: #"{"durability":"normal","device_id":"dev-a","batch_size":2}"#, before: 0, after: 4)
        try inc(restored, 7)                     // seqs 2...8 again: 4 collide, 3 do not
        try syncText(restored, hub, rounds: 20)
        #expect(try picked(hub) == 11)
        #expect(try restored.outboxCount() == 0)
        #expect(try hub.stats()["entries_applied"]?.int == 12)
        #expect(try hub.stats()["audit_chain_breaks"]?.int == 0)
        #expect(try hub.stats()["audit_gaps"]?.int == 0)
    }

    /// A restored copy repeats batch numbers; the hub's old answer to the
    /// original's batch, replayed to it, must not acknowledge its new action.
    @Test func anOldResponseReplayedToARestoredCopyAcknowledgesNothing() throws {
        let hub = try Hub(path: tempPath("hub.db"), schemaJSON: taskSchema, optionsJSON: nil)
        let path = tempPath("tablet.db")
        var store: Store? = try openStore(path)
        try enroll(try #require(store), hub)
        _ = try store?.apply(action(#"{"type":"task","id":"T-1","actor":"op","action":"create","set":{"status":"open"}}"#))
        try syncText(try #require(store), hub)
        store?.close()
        store = nil
        #expect(system("cp \(path) \(path).bak") == 0)
        store = try openStore(path)
        try inc(try #require(store))
        let request = try #require(try store?.prepareText().request)
        let answer = try request.withUnsafeBytes { (r) throws(FieldSyncError) -> [UInt8] in try hub.handle(text: r) }
        store?.close()
        store = nil
        #expect(system("cp \(path).bak \(path)") == 0)
        let restored = try openStore(path)
        try inc(restored)
        let again = try #require(try restored.prepareText().request)
        #expect(String(decoding: again, as: UTF8.self).contains("\"batch\":\"dev-a-b2\""))
        #expect(String(decoding: answer, as: UTF8.self).contains("\"batch\":\"dev-a-b2\""))
        #expect(throws: FieldSyncError.self) {
            _ = try answer.withUnsafeBytes { (r) throws(FieldSyncError) -> JSON in try restored.receive(text: r) }
        }
        #expect(try restored.outboxCount() == 1)
        try syncText(restored, hub)
        #expect(try picked(hub) == 2)
    }

    /// A key rotated through one handle: requests signed with the old key are
    /// refused, the re-enrolled key syncs, and another handle on the same file
    /// signs with the new key too.
    @Test func aRotatedKeyIsRefusedUntilEnrolledThenEveryHandleUsesIt() throws {
        let hub = try Hub(path: tempPath("hub.db"), schemaJSON: taskSchema, optionsJSON: nil)
        let path = tempPath("tablet.db")
        let first = try openStore(path), second = try openStore(path)
        try enroll(first, hub)
        _ = try first.apply(action(#"{"type":"task","id":"T-1","actor":"op","action":"create","set":{"status":"open"}}"#))
        try syncText(first, hub)
        let old = first.publicKey
        let new = try first.rotateKey()
        #expect(new != old && first.publicKey == new)
        try inc(first)
        #expect(throws: FieldSyncError.self) { try syncText(first, hub) }
        #expect(try hub.stats()["auth_refused_bad_signature"]?.int == 1)
        let answer = try hub.enroll(.object(["device_id": .string(first.deviceId), "public_key": .string(new)]))
        #expect(answer["rotated"]?.bool == true)
        try inc(second)
        try syncText(second, hub)
        #expect(try picked(hub) == 2)
        #expect(second.publicKey == new)
    }

    /// An enrolled device cannot put its audit rows on another device's entries.
    @Test func anAuditRowNamingAnotherDevicesKeyIsRefusedWhole() throws {
        let hub = try Hub(path: tempPath("hub.db"), schemaJSON: taskSchema, optionsJSON: nil)
        let store = try openStore()
        _ = try store.apply(action(#"{"type":"task","id":"T-1","actor":"op","action":"create","set":{"status":"open"}}"#))
        guard case .object(var request) = try #require(try store.prepare().request),
              case .array(var audit) = try #require(request["audit"]), case .object(var row) = try #require(audit.first) else {
            Issue.record("no request")
            return
        }
        row["outbox_keys"] = .array([.string("tablet-9-1")])
        audit[0] = .object(row)
        request["audit"] = .array(audit)
        #expect(throws: FieldSyncError.self) { _ = try hub.handle(.object(request)) }
        #expect(try hub.stats()["entries_applied"]?.int == 0)
    }

    /// The answer that made a restored copy recover, delivered again later
    /// (a duplicate or late delivery, after newer actions were acknowledged),
    /// renumbers nothing and changes nothing.
    @Test func theAnswerThatStartedARecoveryDeliveredAgainChangesNothing() throws {
        let hub = try Hub(path: tempPath("hub.db"), schemaJSON: taskSchema, optionsJSON: nil)
        let restored = try restoredImage(hub, before: 0, after: 3)
        try inc(restored, 2)
        try restored.connectivity(up: true)
        let request = try #require(try restored.prepareText().request)
        let first = try request.withUnsafeBytes { (r) throws(FieldSyncError) -> [UInt8] in try hub.handle(text: r) }
        #expect(String(decoding: first, as: UTF8.self).contains("key_reused"))
        _ = try first.withUnsafeBytes { (r) throws(FieldSyncError) -> JSON in try restored.receive(text: r) }
        try syncText(restored, hub)
        try inc(restored)
        try syncText(restored, hub)
        #expect(try picked(hub) == 6)
        try inc(restored)                        // not yet sent when the old answer comes again
        let before = try restored.stats()
        _ = try? first.withUnsafeBytes { (r) throws(FieldSyncError) -> JSON in try restored.receive(text: r) }
        let after = try restored.stats()
        #expect(after["restored_recoveries"]?.int == 1)
        #expect(after["last_seq"] == before["last_seq"])
        #expect(try restored.outboxCount() == 1)
        try syncText(restored, hub)
        #expect(try picked(hub) == 7)
        #expect(try hub.stats()["audit_chain_breaks"]?.int == 0)
        #expect(try hub.stats()["entries_rejected"]?.int == 0)
        #expect(try hub.stats()["entries_key_reused"]?.int == 2)
    }
}

extension String {
    func replacingFirst(_ target: String, with replacement: String) -> String {
        let s = Array(utf8), t = Array(target.utf8)
        guard t.count <= s.count else { return self }
        for i in 0...(s.count - t.count) where Array(s[i..<(i + t.count)]) == t {
            return String(decoding: s[..<i] + Array(replacement.utf8) + s[(i + t.count)...], as: UTF8.self)
        }
        return self
    }
}
