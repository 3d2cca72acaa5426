// Reading the members of one object of a message.

extension Wire {
    /// Reads the members of one object of a message, each checked where it
    /// is read: an integer outside its range, a string too long or a member
    /// of the wrong kind is FS_ERR_ARG naming the member.
    struct Members {
        // The place is put into words only when a member is refused: a
        // request of 500 entries would otherwise build 1,000 strings that
        // nobody reads.
        private let what: String
        private let index: Int?
        private let suffix: String

        /// `Members("request: entries", 3)` reads "request: entries[3]" in
        /// messages; `suffix` follows the index (": state").
        init(_ what: String, _ index: Int? = nil, _ suffix: String = "") {
            self.what = what
            self.index = index
            self.suffix = suffix
        }

        var context: String { index.map { "\(what)[\($0)]\(suffix)" } ?? what + suffix }

        func int(_ value: JSON?, _ name: @autoclosure () -> String, _ range: ClosedRange<Int64>) throws(FieldSyncError) -> Int64? {
            guard let value, !value.isNull else { return nil }
            guard let n = value.int, range.contains(n) else {
                let got = value.int.map { "\($0)" } ?? value.kind
                throw .arg("\(context): \"\(name())\" must be an integer in \(range.lowerBound)...\(range.upperBound), got \(got)")
            }
            return n
        }

        func requiredInt(_ value: JSON?, _ name: @autoclosure () -> String, _ range: ClosedRange<Int64>) throws(FieldSyncError) -> Int64 {
            guard let n = try int(value, name(), range) else { throw .arg("\(context): \"\(name())\" is missing") }
            return n
        }

        func text(_ value: JSON?, _ name: @autoclosure () -> String, maxBytes: Int = Limits.maxIDBytes) throws(FieldSyncError) -> String? {
            guard let value, !value.isNull else { return nil }
            guard let s = value.string else { throw .arg("\(context): \"\(name())\" must be a string, got \(value.kind)") }
            if s.utf8.count > maxBytes { throw .arg("\(context): \"\(name())\" is \(s.utf8.count) bytes; at most \(maxBytes)") }
            return s
        }

        func requiredText(_ value: JSON?, _ name: @autoclosure () -> String, maxBytes: Int = Limits.maxIDBytes) throws(FieldSyncError) -> String {
            guard let s = try text(value, name(), maxBytes: maxBytes) else { throw .arg("\(context): \"\(name())\" is missing") }
            return s
        }

        func object(_ value: JSON?, _ name: @autoclosure () -> String) throws(FieldSyncError) -> JSONObject? {
            guard let value, !value.isNull else { return nil }
            guard let o = value.object else { throw .arg("\(context): \"\(name())\" must be an object, got \(value.kind)") }
            return o
        }

        func bool(_ value: JSON?, _ name: @autoclosure () -> String) throws(FieldSyncError) -> Bool? {
            guard let value, !value.isNull else { return nil }
            guard let b = value.bool else { throw .arg("\(context): \"\(name())\" must be true or false, got \(value.kind)") }
            return b
        }

        func array(_ value: JSON?, _ name: @autoclosure () -> String) throws(FieldSyncError) -> [JSON] {
            guard let value, !value.isNull else { return [] }
            guard let a = value.array else { throw .arg("\(context): \"\(name())\" must be an array, got \(value.kind)") }
            return a
        }
    }
}
