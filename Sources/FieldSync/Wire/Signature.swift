// Signed messages (docs/PROTOCOL.md "Signatures"). A request or response is
// the JSON text as its writer produced it, with one last member
// `"signature"`: the Ed25519 signature of the SHA-256 of every byte before
// `,"signature"`. Signing the bytes as sent, not a re-serialised form, means
// the reader verifies before it trusts anything it parsed, and no two writers
// have to agree on a canonical form; a transport must carry the text byte for
// byte. Signing their digest, not the bytes, keeps the cost flat (Ed25519
// hashes what it signs twice with SHA-512: 1.1 ms for a 190 KB request on
// this VM, against 0.2 ms with the digest) and gives a host's secure element
// 87 bytes to sign, not megabytes.

extension Wire {
    enum Signature {
        static let marker: [UInt8] = Array(",\"signature\":\"".utf8)

        /// The text's length without the trailing whitespace a transport may
        /// add, which is neither signed nor hashed.
        static func trimmedCount(_ text: UnsafeRawBufferPointer) -> Int {
            var end = text.count
            while end > 0, [0x20, 0x0A, 0x0D, 0x09].contains(text[end - 1]) { end -= 1 }
            return end
        }
        /// `,"signature":"<128 hex>"}`
        static let suffixBytes = marker.count + 2 * Ed25519.signatureBytes + 2

        /// Ends `text` (a JSON object as the engine wrote it: its last byte
        /// is the closing brace) with its signature. Returns the digest of
        /// the signed bytes: what the answer to a request names (`request_hash`).
        @discardableResult
        static func sign(_ text: inout [UInt8], with signer: Signer) throws(FieldSyncError) -> String {
            guard text.last == UInt8(ascii: "}"), text.count >= 2 else { throw .internal("signing a text that is not an object") }
            text.removeLast()
            let digest = try Signature.digest(text)
            let signature = try signer.sign(message(digest: digest))
            text.append(contentsOf: marker)
            text.append(contentsOf: Hex.encode(signature).utf8)
            text.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: "}")])
            return digest
        }

        /// The signed bytes and the signature of a text ending with a
        /// signature member (trailing whitespace, as a transport may add,
        /// is not part of either), or nil.
        static func split(_ text: UnsafeRawBufferPointer) -> (signed: UnsafeRawBufferPointer, signature: [UInt8])? {
            let end = trimmedCount(text)
            guard end > suffixBytes else { return nil }
            let start = end - suffixBytes
            for (i, b) in marker.enumerated() where text[start + i] != b { return nil }
            guard text[end - 2] == UInt8(ascii: "\""), text[end - 1] == UInt8(ascii: "}") else { return nil }
            let hexStart = start + marker.count
            let digits = String(decoding: UnsafeRawBufferPointer(rebasing: text[hexStart..<(end - 2)]), as: UTF8.self)
            guard let signature = Hex.decode(digits, count: Ed25519.signatureBytes) else { return nil }
            return (UnsafeRawBufferPointer(rebasing: text[0..<start]), signature)
        }

        /// What is signed for a text: a context line and the SHA-256 of its
        /// signed bytes (so a signature of a message cannot pass for one of
        /// an audit head, or the other way round).
        static func message(digest: String) -> [UInt8] { Array("fieldsync signed message\n\(digest)".utf8) }

        /// SHA-256 (hex) of a message's signed bytes: signed, and named by the answer.
        static func digest(_ signed: UnsafeRawBufferPointer) throws(FieldSyncError) -> String {
            try SHA256.hex(UnsafeBufferPointer(start: signed.baseAddress?.assumingMemoryBound(to: UInt8.self), count: signed.count))
        }

        static func digest(_ signed: [UInt8]) throws(FieldSyncError) -> String {
            try signed.withUnsafeBytes { b in Swift.Result { () throws(FieldSyncError) -> String in try digest(b) } }.get()
        }

        /// What a device signs to vouch for its audit trail up to a row: the
        /// row's id and hash, which by the chain cover every row before it
        /// (docs/AUDIT.md "Signed chain heads"; a verifier rebuilds these bytes).
        static func auditHead(device: String, auditId: Int64, hash: String) -> [UInt8] {
            Array("fieldsync audit head\n\(device)\n\(auditId)\n\(hash)".utf8)
        }
    }

    /// What a signed request says about its sender beyond the protocol's
    /// members: the store instance, and the signed head of the audit rows
    /// it carries.
    struct Credentials: Equatable {
        var instance: String
        var head: Head?

        struct Head: Equatable {
            var auditId: Int64
            var hash: String
            var signature: [UInt8]
        }

        init(instance: String, head: Head?) {
            self.instance = instance
            self.head = head
        }

        init(_ json: JSON?) throws(FieldSyncError) {
            let m = Members("request: auth")
            guard let o = json?.object else { throw .arg("request: \"auth\" must be an object with \"instance\"") }
            instance = try m.requiredText(o["instance"], "instance")
            guard isInstanceId(instance) else { throw .arg("request: auth.instance must be a store instance id (32 hex digits)") }
            if let h = o["audit_head"], !h.isNull {
                let hm = Members("request: auth.audit_head")
                guard let ho = h.object else { throw .arg("request: auth.audit_head must be an object") }
                let auditId = try hm.requiredInt(ho["audit_id"], "audit_id", 1...Wire.maxSeq)
                let hash = try hm.requiredText(ho["hash"], "hash")
                guard let sig = Hex.decode(try hm.requiredText(ho["signature"], "signature"), count: Ed25519.signatureBytes) else {
                    throw .arg("request: auth.audit_head.signature must be 128 hex digits")
                }
                head = Head(auditId: auditId, hash: hash, signature: sig)
            }
        }

        func write(to out: inout ByteWriter) {
            out.append("{")
            if let head {
                out.append("\"audit_head\":{\"audit_id\":"); JSON.writeInt(head.auditId, to: &out)
                out.append(",\"hash\":"); JSON.writeString(head.hash, to: &out)
                out.append(",\"signature\":"); JSON.writeString(Hex.encode(head.signature), to: &out)
                out.append("},")
            }
            out.append("\"instance\":"); JSON.writeString(instance, to: &out)
            out.append("}")
        }
    }
}
