package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestManPage builds snowrain, generates its man page and checks that
// every flag `serve -h` lists is documented and that groff reads the page
// without a warning.
func TestManPage(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "snowrain")
	if out, err := exec.Command("go", "build", "-ldflags", "-X main.version=1.2.3", "-o", bin, "../../cmd/snowrain").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	var page bytes.Buffer
	if err := write(&page, bin, time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	text := page.String()
	if !strings.Contains(text, `.TH SNOWRAIN 8 "2026-11-30" "snowrain 1.2.3"`) {
		t.Errorf("title line:\n%s", text[:200])
	}
	serveHelp, _ := exec.Command(bin, "serve", "-h").CombinedOutput()
	flags := regexp.MustCompile(`(?m)^\s+--?([a-z0-9][a-z0-9-]*)`).FindAllStringSubmatch(string(serveHelp), -1)
	if len(flags) < 10 {
		t.Fatalf("serve -h: %s", serveHelp)
	}
	for _, f := range flags {
		if !strings.Contains(text, `.B \-\-`+strings.ReplaceAll(f[1], "-", `\-`)) {
			t.Errorf("flag --%s not in the man page", f[1])
		}
	}
	for _, sec := range []string{".SS snowrain serve", ".SS snowrain report", ".SS snowrain scan domains",
		".SS snowrain policy check", ".SS snowrain db prune", ".SS snowrain report exposure", ".SH FILES"} {
		if !strings.Contains(text, sec+"\n") {
			t.Errorf("no %q", sec)
		}
	}
	// Every command and subcommand `snowrain -h` lists has its section,
	// with its flags.
	top, _ := exec.Command(bin, "-h").Output()
	for _, c := range commands(string(top)) {
		if !strings.Contains(text, ".SS "+esc("snowrain "+c.name)+"\n") {
			t.Errorf("no section for %q", c.name)
		}
	}
	if len(commands(string(top))) < 15 {
		t.Errorf("snowrain -h lists %d commands:\n%s", len(commands(string(top))), top)
	}
	if !strings.Contains(text, ".B \\-\\-older\\-than \" \"\\fIAGE\\fR") {
		t.Error("db prune's --older-than AGE is not in the page")
	}
	if h, _ := os.Hostname(); h != "" && strings.Contains(text, `"`+h+`"`) {
		t.Errorf("the build host's name %q leaked into the page", h)
	}
	groff := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z")
	groff.Stdin = strings.NewReader(text)
	out, err := groff.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("groff: %v\n%s", err, out)
	}
}
