package store

import (
	"runtime"
	"sync"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite's page cache gets memory set aside for it once per process (SQLITE_CONFIG_PAGECACHE), instead of
// allocating each page and freeing it (issue 15). In WAL mode a connection whose read transaction finds the
// database changed by another connection empties its whole cache (pager_reset), and a retrieval commits twice
// (the claim, the delivery record): on a busy gateway nearly every transaction began by freeing its pages and
// allocating them again as it read, and modernc's allocator hands a 64 KB slab back to the system (munmap)
// once all its pages are free, then maps one again. That churn was an eighth of the server's CPU under
// retrieval load on SQLite (munmap alone; mmap and page faults besides). Pages now come from the lines set
// aside and go back to them, shared by the process's connections under SQLite's own lock; a page beyond them
// (more connections, or more databases, than they cover) is allocated as before.
//
// (SQLITE_CONFIG_PAGECACHE's other form, a bulk allocation per connection with no buffer, does nothing in
// this build of SQLite: its page caches are not separate per connection, and it ignores the setting.)

// sqliteCachePages is how many page lines are set aside: the default cache_size (2,000 KiB) of each of the
// pool's four connections, counted in 4 KiB pages (about 460 each with their headers), the size of a database
// created before 8 KiB pages (sqliteDSN); 8 KiB pages need half of them. About 17 MB of address space,
// resident as lines are used (a 4 KiB page in an 8 KiB line touches two of its three memory pages at most).
const sqliteCachePages = 2000

// sqlitePageSize is the largest page size of the gateway's databases (sqliteDSN's page_size; older databases
// have 4 KiB pages, which fit a line too): a larger page would not fit a line and would be allocated as before.
const sqlitePageSize = 8192

var (
	sqlitePageCacheOnce sync.Once
	// sqlitePageCacheRC is what SQLite answered (SQLITE_OK, or SQLITE_MISUSE when it had started already).
	sqlitePageCacheRC int32 = -1
)

// configureSQLitePageCache sets sqliteCachePages for the process, once, before its first SQLite connection
// (SQLite accepts global configuration only before it initialises). If something opened an SQLite
// database first, SQLite refuses (SQLITE_MISUSE) and keeps its default: a matter of speed only, so the
// refusal is ignored.
func configureSQLitePageCache() {
	sqlitePageCacheOnce.Do(func() {
		tls := libc.NewTLS()
		defer tls.Close()
		// The bytes SQLite needs beside each page: SQLITE_CONFIG_PCACHE_HDRSZ writes them to an int, here a
		// pinned Go one (SQLite's C, translated to Go, holds only its address).
		hdr := new(int32)
		var pin runtime.Pinner
		pin.Pin(hdr)
		defer pin.Unpin()
		va := libc.NewVaList(uintptr(unsafe.Pointer(hdr)))
		if va == 0 {
			return
		}
		rc := sqlite3.Xsqlite3_config(tls, sqlite3.SQLITE_CONFIG_PCACHE_HDRSZ, va)
		libc.Xfree(tls, va)
		if rc != sqlite3.SQLITE_OK {
			sqlitePageCacheRC = rc
			return
		}
		line := (sqlitePageSize + int(*hdr) + 7) &^ 7
		// SQLITE_CONFIG_PAGECACHE takes (void *pMem, int sz, int N): N lines of sz bytes at pMem, which SQLite
		// keeps until the process ends.
		buf := libc.Xmalloc(tls, libc.Tsize_t(line*sqliteCachePages))
		if buf == 0 {
			return
		}
		va = libc.NewVaList(buf, int32(line), int32(sqliteCachePages))
		if va == 0 {
			libc.Xfree(tls, buf)
			return
		}
		defer libc.Xfree(tls, va)
		if sqlitePageCacheRC = sqlite3.Xsqlite3_config(tls, sqlite3.SQLITE_CONFIG_PAGECACHE, va); sqlitePageCacheRC != sqlite3.SQLITE_OK {
			libc.Xfree(tls, buf)
		}
	})
}
