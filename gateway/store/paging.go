package store

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
)

// ErrBadCursor is a page cursor the gateway did not write (forged or damaged).
var ErrBadCursor = errors.New("invalid page cursor")

// PageSize is how many items one page of a list holds.
const PageSize = 50

// Page asks for one page of a list: After is the cursor the previous page gave as Next ("" for the first).
// Lists are keyset-paged (WHERE (at, id) < cursor ORDER BY at, id LIMIT n): a page costs the same however
// many items come before it, which an OFFSET would not.
type Page struct {
	After string
	Size  int // 0 means PageSize
}

// Listed is one page of a list: its items, how many the whole list holds, and the cursor of the next page
// ("" on the last).
type Listed[T any] struct {
	Items []T
	Total int64
	Next  string
}

// Limit is how many items the page holds.
func (p Page) Limit() int {
	if p.Size <= 0 || p.Size > PageSize {
		return PageSize
	}
	return p.Size
}

// Cursor is a position in a list: the sort time (and a rank, for lists sorted by one first) and the id of an
// item. Its String is what a page hands out as Next.
type Cursor struct {
	Rank int
	At   time.Time
	ID   string
}

func (c Cursor) String() string {
	s := fmt.Sprintf("%d.%d.%s", c.Rank, c.At.UnixNano(), c.ID)
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

// ParseCursor reads a cursor String wrote (ErrBadCursor otherwise).
func ParseCursor(s string) (Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	parts := strings.SplitN(string(raw), ".", 3)
	if err != nil || len(parts) != 3 || parts[2] == "" {
		return Cursor{}, ErrBadCursor
	}
	rank, err1 := strconv.Atoi(parts[0])
	ns, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return Cursor{}, ErrBadCursor
	}
	return Cursor{Rank: rank, At: time.Unix(0, ns).UTC(), ID: parts[2]}, nil
}

// NewestFirst pages q (newest first) on its time column at and id column id, and counts the whole list.
// rows receives up to one more row than the page holds: PageOf tells from it whether a next page exists.
func NewestFirst(q *gorm.DB, at, id string, p Page, rows any) (total int64, err error) {
	if err := q.Session(&gorm.Session{}).Select("COUNT(*)").Scan(&total).Error; err != nil {
		return 0, err
	}
	page := q.Session(&gorm.Session{}).Order(at + " DESC, " + id + " DESC").Limit(p.Limit() + 1)
	if p.After != "" {
		c, err := ParseCursor(p.After)
		if err != nil {
			return 0, err
		}
		page = page.Where("("+at+" < ? OR ("+at+" = ? AND "+id+" < ?))", c.At, c.At, c.ID)
	}
	return total, page.Find(rows).Error
}

// PageOf cuts the extra row a paged query read and gives the next cursor.
func PageOf[T any](items []T, p Page, total int64, key func(T) Cursor) Listed[T] {
	out := Listed[T]{Items: items, Total: total}
	if len(items) > p.Limit() {
		out.Items = items[:p.Limit()]
		out.Next = key(out.Items[len(out.Items)-1]).String()
	}
	return out
}
