// Online backups of a hub or a store file (docs/OPERATIONS.md "Backups"):
// SQLite's backup API copies the database as one read transaction sees it,
// so the copy is consistent while other handles and processes go on writing
// (WAL: readers do not block them). The copy is written beside its final
// name and renamed into place only when complete, so a crash or a full disk
// never leaves a half backup under the name asked for.
import CSQLite
import Glibc

extension Connection {
    /// `finish` (SQL) runs on the complete copy before it takes its name.
    func backup(to path: String, finish script: String = "") throws(FieldSyncError) {
        guard !path.isEmpty else { throw .arg("backup path is empty") }
        if access(path, F_OK) == 0 { throw .arg("\(path) exists: a backup never overwrites a file (remove it, or choose another name)") }
        let partial = path + ".partial"
        unlink(partial)
        var copy: OpaquePointer?
        let rc = sqlite3_open_v2(partial, &copy, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_EXRESCODE, nil)
        func discard() {
            sqlite3_close_v2(copy)
            for suffix in ["", "-wal", "-shm", "-journal"] { unlink(partial + suffix) }
        }
        guard rc == SQLITE_OK, let copy else {
            let message = copy.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) } ?? "out of memory"
            discard()
            throw Connection.error(rc, "cannot create \(partial): \(message)")
        }
        guard let backup = sqlite3_backup_init(copy, "main", db, "main") else {
            let message = String(cString: sqlite3_errmsg(copy))
            let code = sqlite3_extended_errcode(copy)
            discard()
            throw Connection.error(code, "cannot start the backup: \(message)")
        }
        // All pages in one step: one read transaction, so one state of the file.
        let step = sqlite3_backup_step(backup, -1)
        let finish = sqlite3_backup_finish(backup)
        guard step == SQLITE_DONE, finish == SQLITE_OK else {
            let code = step == SQLITE_DONE ? finish : step
            let message = String(cString: sqlite3_errstr(code))
            discard()
            throw Connection.error(code, "backup to \(path) failed: \(message)")
        }
        // A standalone file: no WAL beside it to lose when it is copied on.
        var closing = sqlite3_exec(copy, script + "PRAGMA journal_mode=DELETE", nil, nil, nil)
        if closing == SQLITE_OK { closing = sqlite3_close_v2(copy) } else { sqlite3_close_v2(copy) }
        guard closing == SQLITE_OK else {
            for suffix in ["", "-wal", "-shm", "-journal"] { unlink(partial + suffix) }
            throw Connection.error(closing, "backup to \(path) failed while closing: \(String(cString: sqlite3_errstr(closing)))")
        }
        guard rename(partial, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(partial)
            throw .io("backup to \(path) failed: cannot rename \(partial): \(reason)")
        }
    }
}

extension Hub {
    /// A consistent copy of the hub file at `path`, taken while it serves.
    /// The copy is the next generation (HubRestore.swift): a hub restored
    /// from it tells its devices it went back in time. The running hub
    /// keeps its own.
    package func backup(to path: String) throws(FieldSyncError) {
        guard let db = storage.db as? Connection else {
            throw .arg("a PostgreSQL hub is backed up by its server (pg_dump, base backups): docs/OPERATIONS.md \"PostgreSQL hub\"")
        }
        try db.backup(to: path, finish: "UPDATE fs_meta SET value = value + 1 WHERE key = 'generation';")
    }
}

extension Store {
    /// A consistent copy of the store file at `path` (a device image).
    package func backup(to path: String) throws(FieldSyncError) { try db.backup(to: path) }
}
