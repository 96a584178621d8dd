package postfixtest

import "testing"

// TestMasterOnPort: the instance's master.cf listens on the picked port
// only, whatever other inet services the file it starts from has.
func TestMasterOnPort(t *testing.T) {
	in := `# comment
smtp      inet  n       -       y       -       -       smtpd
#submission inet n       -       y       -       -       smtpd
submission inet n       -       y       -       -       smtpd
  -o syslog_name=postfix/submission

	-o smtpd_tls_security_level=encrypt
127.0.0.1:10025 inet n  -       n       -       -       smtpd
  -o content_filter=
pickup    unix  n       -       y       60      1       pickup
  -o content_filter=
smtps     inet  n       -       y       -       -       smtpd
`
	want := `# comment
127.0.0.1:2600 inet  n       -       y       -       -       smtpd
#submission inet n       -       y       -       -       smtpd
#submission inet n       -       y       -       -       smtpd
#  -o syslog_name=postfix/submission

#	-o smtpd_tls_security_level=encrypt
#127.0.0.1:10025 inet n  -       n       -       -       smtpd
#  -o content_filter=
pickup    unix  n       -       y       60      1       pickup
  -o content_filter=
#smtps     inet  n       -       y       -       -       smtpd
`
	got, err := masterOnPort(in, 2600)
	if err != nil || got != want {
		t.Errorf("got (%v)\n%s\nwant\n%s", err, got, want)
	}
	if _, err := masterOnPort("pickup unix n - y 60 1 pickup\n", 2600); err == nil {
		t.Error("master.cf without smtp inet accepted")
	}
}
