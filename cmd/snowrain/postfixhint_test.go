package main

import (
	"strings"
	"testing"

	"github.com/snowrain/snowrain/config"
)

func TestPostfixHint(t *testing.T) {
	debian := postfixSite{Found: true, QueueDir: "/var/spool/postfix",
		Chroot:  map[string]bool{"smtpd": true, "cleanup": true, "smtp": true},
		Current: map[string]string{"proxy_read_maps": "$local_recipient_maps $smtp_tls_policy_maps"}}
	withOpenDKIM := debian
	withOpenDKIM.Current = map[string]string{"smtpd_milters": "unix:opendkim/opendkim.sock",
		"non_smtpd_milters": "$smtpd_milters", "smtpd_recipient_restrictions": "permit_mynetworks, reject_unauth_destination",
		"smtp_tls_policy_maps": "hash:/etc/postfix/tls_policy", "proxy_read_maps": "hash:/etc/postfix/x"}
	cfg := func(edit func(*config.Config)) config.Config {
		c := config.Default()
		if edit != nil {
			edit(&c)
		}
		return c
	}
	cases := []struct {
		name  string
		cfg   config.Config
		site  postfixSite
		want  []string // lines, in order
		warns int
	}{
		{"default socket, Debian Postfix", cfg(nil), debian, []string{
			"smtpd_milters = unix:snowrain/milter.sock",
			"non_smtpd_milters = $smtpd_milters",
			"milter_default_action = accept"}, 0},
		{"socket outside the chroot", cfg(func(c *config.Config) { c.Milter = "unix:/run/snowrain/milter.sock" }), debian, []string{
			"smtpd_milters = unix:/run/snowrain/milter.sock"}, 1},
		{"inet socket", cfg(func(c *config.Config) { c.Milter = "inet:8891@127.0.0.1" }), debian, []string{
			"smtpd_milters = inet:127.0.0.1:8891"}, 0},
		{"appends to what is there", cfg(func(c *config.Config) {
			c.Policy.Socket = "unix:/var/spool/postfix/snowrain/policy.sock"
			c.Policy.Inbound.Socket = "unix:/var/spool/postfix/snowrain/inbound.sock"
		}), withOpenDKIM, []string{
			"smtpd_milters = unix:opendkim/opendkim.sock unix:snowrain/milter.sock",
			"non_smtpd_milters = $smtpd_milters",
			"smtp_tls_policy_maps = hash:/etc/postfix/tls_policy proxy:socketmap:unix:/var/spool/postfix/snowrain/policy.sock:tls",
			"proxy_read_maps = hash:/etc/postfix/x proxy:socketmap:unix:/var/spool/postfix/snowrain/policy.sock:tls",
			"smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination, check_policy_service { unix:snowrain/inbound.sock, default_action=DUNNO, timeout=10s }"}, 0},
		{"proxy_read_maps already covers the map", cfg(func(c *config.Config) { c.Policy.Socket = "unix:/x/policy.sock" }), debian, []string{
			"smtp_tls_policy_maps = proxy:socketmap:unix:/x/policy.sock:tls"}, 0},
		{"no postconf", cfg(func(c *config.Config) { c.Policy.Socket = "unix:/var/spool/postfix/snowrain/policy.sock" }),
			postfixSite{QueueDir: debianQueueDir, Chroot: map[string]bool{}, Current: map[string]string{}}, []string{
				"smtpd_milters = unix:snowrain/milter.sock",
				`# run: postconf -e "smtp_tls_policy_maps = $(postconf -h smtp_tls_policy_maps) proxy:socketmap:unix:/var/spool/postfix/snowrain/policy.sock:tls"`,
				`# postconf -e "proxy_read_maps = $(postconf -h proxy_read_maps) proxy:socketmap:unix:/var/spool/postfix/snowrain/policy.sock:tls"`}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text, warns := postfixHint(c.cfg, c.site)
			at := 0
			for _, want := range c.want {
				i := strings.Index(text[at:], want+"\n")
				if i < 0 {
					t.Fatalf("hint lacks %q (in order):\n%s", want, text)
				}
				at += i
			}
			if len(warns) != c.warns {
				t.Errorf("warnings %q, want %d", warns, c.warns)
			}
			seen := map[string]bool{}
			for _, l := range strings.Split(text, "\n") {
				if k, _, ok := strings.Cut(l, " = "); ok && !strings.HasPrefix(l, "#") {
					if seen[k] {
						t.Errorf("key %s set twice:\n%s", k, text)
					}
					seen[k] = true
				}
			}
		})
	}
}

func TestChrootedDaemons(t *testing.T) {
	got := chrootedDaemons("smtp/inet/chroot = y\nsmtp/inet/command = smtpd\n" +
		"submission/inet/chroot = n\nsubmission/inet/command = smtpd -o syslog_name=postfix/submission\n" +
		"proxymap/unix/chroot = n\nproxymap/unix/command = proxymap\n")
	if !got["smtpd"] || got["proxymap"] {
		t.Errorf("got %v", got)
	}
}
