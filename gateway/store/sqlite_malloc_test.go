package store

import (
	"context"
	"path/filepath"
	"testing"

	"modernc.org/libc"
)

// Opening an SQLite database pins pages of the C allocator under SQLite (sqlite_malloc.go): every size class
// has pinnedPages pages or more kept, and a block allocated afterwards of each class comes from one of them
// (so freeing it unmaps nothing). A change of the allocator's internals that stops this fails here.
func TestSQLiteAllocatorPagesPinned(t *testing.T) {
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer Close(db)
	if n := len(pinnedAllocatorPages); n < 11*pinnedPages {
		t.Fatalf("%d pages pinned, want at least %d (11 size classes, %d pages each)", n, 11*pinnedPages, pinnedPages)
	}
	tls := libc.NewTLS()
	defer tls.Close()
	for log := 4; log <= 14; log++ {
		for range 2 {
			p := libc.Xmalloc(tls, libc.Tsize_t(1)<<log)
			if p == 0 {
				t.Fatalf("malloc(%d) failed", 1<<log)
			}
			pinned := pinnedAllocatorPages[p&^(allocatorPage-1)]
			libc.Xfree(tls, p)
			if !pinned {
				t.Fatalf("malloc(%d) returned a block outside the pinned pages", 1<<log)
			}
		}
	}
}
