package measure

import (
	"time"
)

// Scope is what a report reads: the records of [Since, Until) and, when
// Node is set, those one node of a fleet wrote; an empty Node is the
// whole fleet (every node's rows summed). Rollups count whole hours, so
// a period not on hour boundaries is widened to them (Hours).
type Scope struct {
	Since, Until time.Time
	Node         string
}

// hours is the scope's rollup hours [from, to).
func (sc Scope) hours() (from, to int64) { return Hours(sc.Since, sc.Until) }

// rollup is the condition and arguments selecting the scope's rows of an
// hourly_* table, to follow WHERE (or AND).
func (sc Scope) rollup() (string, []any) {
	from, to := sc.hours()
	return sc.node("hour >= ? AND hour < ?", from, to)
}

// records is the condition and arguments selecting the scope's rows of a
// record table by its time column (seconds).
func (sc Scope) records(col string) (string, []any) {
	return sc.node(col+" >= ? AND "+col+" < ?", sc.Since.Unix(), sc.Until.Unix())
}

// node adds the node condition to cond when the scope names one.
func (sc Scope) node(cond string, args ...any) (string, []any) {
	if sc.Node == "" {
		return cond, args
	}
	return cond + " AND node = ?", append(args, sc.Node)
}
