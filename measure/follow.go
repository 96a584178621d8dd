package measure

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/snowrain/snowrain/measure/maillog"
)

// Follower tails an MTA log into the store. It survives rotation by rename
// (it finishes the old file, then opens the new one) and by copytruncate
// (the file shrinks: it starts over), and keeps its position in the
// database in the same transaction as the deliveries it read.
type Follower struct {
	Store  *Store
	Path   string
	Parser *maillog.Parser
	Poll   time.Duration // how often to look for new lines; default 1s
	Batch  int           // deliveries per transaction; default 1000
	Log    *slog.Logger
	// OnDelivery, if set, sees every delivery read (downgrade detection).
	OnDelivery func(*maillog.Delivery)

	f      *os.File
	r      *bufio.Reader
	inode  uint64
	offset int64
	batch  []*maillog.Delivery
	lines  logLines
}

// Run follows the log until ctx ends; it returns after writing what it
// read.
func (fw *Follower) Run(ctx context.Context) error {
	fw.defaults()
	if err := fw.open(ctx); err != nil {
		return err
	}
	defer func() { fw.f.Close() }()
	for {
		if err := fw.readAvailable(ctx); err != nil {
			return err
		}
		if err := fw.commit(ctx); err != nil {
			fw.Log.Error("maillog: writing deliveries", "err", err)
		}
		select {
		case <-ctx.Done():
			return fw.commit(context.Background())
		case <-time.After(fw.Poll):
		}
		if err := fw.checkRotation(ctx); err != nil {
			fw.Log.Warn("maillog: rotation", "path", fw.Path, "err", err)
		}
	}
}

func (fw *Follower) defaults() {
	if fw.Parser == nil {
		fw.Parser = maillog.NewParser()
	}
	if fw.Poll <= 0 {
		fw.Poll = time.Second
	}
	if fw.Batch <= 0 {
		fw.Batch = 1000
	}
	if fw.Log == nil {
		fw.Log = slog.Default()
	}
}

// open opens the log at the stored position; if the log was rotated while
// we were away, the rest of the old file (PATH.1) is read first.
func (fw *Follower) open(ctx context.Context) error {
	pos, ok, err := fw.Store.LogPosition(ctx, fw.Path)
	if err != nil {
		return err
	}
	if ok {
		if old := fw.Path + ".1"; inodeOf(old) == pos.Inode && inodeOf(fw.Path) != pos.Inode {
			if err := fw.drainFile(ctx, old, pos.Offset); err != nil {
				fw.Log.Warn("maillog: reading rotated log", "path", old, "err", err)
			}
			pos.Offset = 0
		}
	}
	f, err := os.Open(fw.Path)
	if err != nil {
		return fmt.Errorf("maillog: %w", err)
	}
	fw.setFile(f)
	if ok && fw.inode == pos.Inode {
		if fi, err := f.Stat(); err == nil && fi.Size() >= pos.Offset {
			f.Seek(pos.Offset, io.SeekStart)
			fw.offset = pos.Offset
			fw.r.Reset(f)
		}
	}
	return nil
}

func (fw *Follower) setFile(f *os.File) {
	fw.f = f
	fw.inode = inodeOfFile(f)
	fw.offset = 0
	if fw.r == nil {
		fw.r = bufio.NewReaderSize(f, 64<<10)
	} else {
		fw.r.Reset(f)
	}
}

// drainFile reads a rotated file from offset to its end.
func (fw *Follower) drainFile(ctx context.Context, path string, offset int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return err
	}
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadString('\n')
		if len(line) > 0 && (err == nil || errors.Is(err, io.EOF)) {
			fw.feed(line)
		}
		if err != nil {
			return fw.commit(ctx)
		}
	}
}

// readAvailable reads every complete line there is now.
func (fw *Follower) readAvailable(ctx context.Context) error {
	for {
		line, err := fw.r.ReadString('\n')
		if errors.Is(err, io.EOF) {
			// A partial line stays unread until its newline arrives.
			if len(line) > 0 {
				fw.f.Seek(fw.offset, io.SeekStart)
				fw.r.Reset(fw.f)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("maillog: %w", err)
		}
		fw.offset += int64(len(line))
		fw.feed(line)
		if len(fw.batch) >= fw.Batch {
			if err := fw.commit(ctx); err != nil {
				return err
			}
		}
	}
}

func (fw *Follower) feed(line string) {
	if d := fw.lines.feed(fw.Parser, line); d != nil {
		fw.batch = append(fw.batch, d)
		if fw.OnDelivery != nil {
			fw.OnDelivery(d)
		}
	}
}

// commit writes the batch and position; it is not cancelled with the
// follower, so what was read on shutdown is kept.
func (fw *Follower) commit(ctx context.Context) error {
	pos := &LogPosition{Source: fw.Path, Inode: fw.inode, Offset: fw.offset}
	if err := fw.Store.RecordDeliveriesTLS(context.WithoutCancel(ctx), fw.batch, fw.lines.outs, pos); err != nil {
		return err
	}
	fw.batch = fw.batch[:0]
	fw.lines.outs = fw.lines.outs[:0]
	return nil
}

// checkRotation reopens the log when it was renamed away or truncated.
func (fw *Follower) checkRotation(ctx context.Context) error {
	fi, err := os.Stat(fw.Path)
	if err != nil {
		return nil // between rename and create: try again next poll
	}
	if ino := inodeOfInfo(fi); ino != fw.inode {
		if err := fw.readAvailable(ctx); err != nil { // the old file's last lines
			return err
		}
		if err := fw.commit(ctx); err != nil {
			return err
		}
		f, err := os.Open(fw.Path)
		if err != nil {
			return err
		}
		fw.f.Close()
		fw.setFile(f)
		return nil
	}
	if fi.Size() < fw.offset { // copytruncate
		fw.f.Seek(0, io.SeekStart)
		fw.r.Reset(fw.f)
		fw.offset = 0
	}
	return nil
}

func inodeOf(path string) uint64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return inodeOfInfo(fi)
}

func inodeOfFile(f *os.File) uint64 {
	fi, err := f.Stat()
	if err != nil {
		return 0
	}
	return inodeOfInfo(fi)
}

func inodeOfInfo(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// IngestReader parses a whole log (gzip-compressed or not) into the store
// without recording a position: for one-off imports.
func (s *Store) IngestReader(ctx context.Context, r io.Reader, p *maillog.Parser) (int, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return 0, fmt.Errorf("maillog: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 64<<10)
	}
	var batch []*maillog.Delivery
	var lines logLines
	n := 0
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			if d := lines.feed(p, line); d != nil {
				batch = append(batch, d)
			}
		}
		if len(batch) >= 5000 || (err != nil && len(batch) > 0) {
			if err := s.RecordDeliveriesTLS(ctx, batch, lines.outs, nil); err != nil {
				return n, err
			}
			n += len(batch)
			batch = batch[:0]
			lines.outs = lines.outs[:0]
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("maillog: %w", err)
		}
	}
}
