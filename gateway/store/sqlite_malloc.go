package store

import (
	"sync"

	"modernc.org/libc"
)

// The C memory allocator under SQLite (modernc.org/libc over modernc.org/memory) keeps allocations of up to
// 16 KB in shared 64 KB pages, one size class per page, maps a page when a class has no free slot and unmaps
// it as soon as its last slot is freed. SQLite allocates and frees as it runs statements and reads rows, so under
// retrieval load pages were mapped and unmapped all the time (issue 15: the allocator's mmap and munmap were
// 9.5 % of the server's CPU in bench-peer's profile at c = 8; by `perf record -a -e syscalls:sys_enter_munmap`,
// the server made 23.96 % of that run's 42,633 munmap calls, about 10,200, and 0.98 % of 18,896, about 185, with
// the pages pinned). The driver then also compiled every statement at each execution; with statements kept
// compiled (sqlite_stmtcache.go) the churn is smaller but still there: 16.25 % of 38,735 calls, about 6,300,
// without the pages pinned, against 0.97 % of 18,855, about 185, with them (same run, SQLite c = 8, 1,500
// retrievals).
//
// pinSQLiteAllocatorPages keeps pinnedPages pages of each class mapped for the life of the process: it fills
// them, then frees every slot but one per page. The freed slots are reused first, and a page with a slot in use
// is never unmapped; a class that needs more than its pinned pages maps and unmaps beyond them as before.
// About 3 MB (11 classes, 4 or 5 pages of 64 KB each), resident from the start: freeing a slot writes the
// free list's links into it (bench-peer's peak RSS for the 100-entry extract went from 54.4 to 57.0 MB). The
// allocator's calls are its public ones (malloc and free); if its internals change, this costs the memory and
// saves nothing, and TestSQLiteAllocatorPagesPinned fails.

// pinnedPages is how many 64 KB pages of each size class stay mapped.
const pinnedPages = 4

var (
	pinSQLiteAllocatorOnce sync.Once
	// pinnedAllocatorPages are the pages pinned, by address (written once, under the Once; tests read it).
	pinnedAllocatorPages = map[uintptr]bool{}
)

// allocatorPage is the size of the allocator's pages; a slot's page is its address rounded down to it.
const allocatorPage = 1 << 16

func pinSQLiteAllocatorPages() {
	pinSQLiteAllocatorOnce.Do(func() {
		tls := libc.NewTLS()
		defer tls.Close()
		for log := 4; log <= 14; log++ { // slots of 16 bytes to 16 KB
			size := libc.Tsize_t(1) << log
			perPage := allocatorPage >> log // a little more than a page holds: the pages are filled
			var slots []uintptr
			pages := map[uintptr]bool{}
			for range pinnedPages * perPage {
				p := libc.Xmalloc(tls, size)
				if p == 0 {
					break
				}
				slots = append(slots, p)
			}
			for _, p := range slots {
				if pg := p &^ (allocatorPage - 1); !pages[pg] {
					pages[pg] = true // the page's first slot stays allocated: the page stays mapped
					pinnedAllocatorPages[pg] = true
					continue
				}
				libc.Xfree(tls, p)
			}
		}
	})
}
