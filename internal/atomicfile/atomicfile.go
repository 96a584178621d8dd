// Package atomicfile replaces files whole: a reader of the path sees the
// old content or the new one, never a part, and a failed write leaves the
// old file in place.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFile writes data to a new file beside path and renames it over
// path. A new file gets perm less the umask; a replaced one keeps its
// mode.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	replacing := false
	if fi, err := os.Stat(path); err == nil {
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s: not a regular file", path)
		}
		perm, replacing = fi.Mode().Perm(), true
	}
	f, tmp, err := create(path, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && replacing {
		// A replaced file keeps its mode even where the umask would
		// take bits away.
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// create opens a new temporary file in path's directory with perm (the
// umask applies), named so that it cannot collide.
func create(path string, perm fs.FileMode) (*os.File, string, error) {
	dir, base := filepath.Split(path)
	for range 10 {
		var b [6]byte
		rand.Read(b[:])
		tmp := filepath.Join(dir, "."+base+"."+hex.EncodeToString(b[:])+".tmp")
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, tmp, err
	}
	return nil, "", fmt.Errorf("%s: no free temporary name", path)
}
