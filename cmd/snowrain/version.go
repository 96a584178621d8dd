package main

import (
	"runtime/debug"
	"strings"
)

// buildVersion is the version when the build did not set main.version
// (make sets it from `git describe` with -ldflags -X): the module version
// of `go install …@vX`, else the VCS stamp, else "dev".
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return strings.TrimPrefix(v, "v")
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return version
	}
	return "0.0.0+git." + rev + dirty
}

func init() {
	if version == "dev" {
		version = buildVersion()
	}
}
