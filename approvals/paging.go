package approvals

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
)

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

func (p Page) size() int {
	if p.Size <= 0 || p.Size > PageSize {
		return PageSize
	}
	return p.Size
}

// cursor is a position in a list: the sort time (and rank, for the queue) and the id of an item.
type cursor struct {
	rank int
	at   time.Time
	id   string
}

func (c cursor) String() string {
	s := fmt.Sprintf("%d.%d.%s", c.rank, c.at.UnixNano(), c.id)
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

func parseCursor(s string) (cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	parts := strings.SplitN(string(raw), ".", 3)
	if err != nil || len(parts) != 3 || parts[2] == "" {
		return cursor{}, fmt.Errorf("%w: page cursor", ErrBadInput)
	}
	rank, err1 := strconv.Atoi(parts[0])
	ns, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return cursor{}, fmt.Errorf("%w: page cursor", ErrBadInput)
	}
	return cursor{rank: rank, at: time.Unix(0, ns).UTC(), id: parts[2]}, nil
}

// newestFirst pages q (newest first) on its time column at and id column id, and counts the whole list.
// rows receives up to one more row than the page holds: listed tells from it whether a next page exists.
func newestFirst(q *gorm.DB, at, id string, p Page, rows any) (total int64, err error) {
	if err := q.Session(&gorm.Session{}).Select("COUNT(*)").Scan(&total).Error; err != nil {
		return 0, err
	}
	page := q.Session(&gorm.Session{}).Order(at + " DESC, " + id + " DESC").Limit(p.size() + 1)
	if p.After != "" {
		c, err := parseCursor(p.After)
		if err != nil {
			return 0, err
		}
		page = page.Where("("+at+" < ? OR ("+at+" = ? AND "+id+" < ?))", c.at, c.at, c.id)
	}
	return total, page.Find(rows).Error
}

// pageOf cuts the extra row newestFirst read and gives the next cursor.
func pageOf[T any](items []T, p Page, total int64, key func(T) cursor) Listed[T] {
	out := Listed[T]{Items: items, Total: total}
	if len(items) > p.size() {
		out.Items = items[:p.size()]
		out.Next = key(out.Items[len(out.Items)-1]).String()
	}
	return out
}
