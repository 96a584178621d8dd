package tlsinfo

import "testing"

func TestParse(t *testing.T) {
	cases := []struct {
		name, kx, cipher, mac string
		fs                    bool
	}{
		{"ECDHE-RSA-AES128-GCM-SHA256", "ECDHE", "AES-128-GCM", "SHA-256", true},
		{"ECDHE-RSA-AES256-GCM-SHA384", "ECDHE", "AES-256-GCM", "SHA-384", true},
		{"ECDHE-RSA-AES256-SHA", "ECDHE", "AES-256", "SHA-1", true},
		{"ECDHE-RSA-CHACHA20-POLY1305", "ECDHE", "CHACHA20-POLY1305", "SHA-256", true},
		{"ECDHE-ECDSA-AES128-SHA256", "ECDHE", "AES-128", "SHA-256", true},
		{"DHE-RSA-AES256-SHA", "DHE", "AES-256", "SHA-1", true},
		{"EDH-RSA-DES-CBC3-SHA", "DHE", "3DES", "SHA-1", true},
		{"AES128-SHA", "RSA", "AES-128", "SHA-1", false},
		{"AES256-GCM-SHA384", "RSA", "AES-256-GCM", "SHA-384", false},
		{"RC4-SHA", "RSA", "RC4", "SHA-1", false},
		{"RC4-MD5", "RSA", "RC4", "MD5", false},
		{"DES-CBC3-SHA", "RSA", "3DES", "SHA-1", false},
		{"ECDHE-RSA-RC4-SHA", "ECDHE", "RC4", "SHA-1", true},
		{"ADH-AES256-SHA", "DH", "AES-256", "SHA-1", false},
		{"TLS_AES_128_GCM_SHA256", "ECDHE", "AES-128-GCM", "SHA-256", true},
		{"TLS_AES_256_GCM_SHA384", "ECDHE", "AES-256-GCM", "SHA-384", true},
		{"TLS_CHACHA20_POLY1305_SHA256", "ECDHE", "CHACHA20-POLY1305", "SHA-256", true},
		{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE", "AES-128-GCM", "SHA-256", true},
		{"TLS_RSA_WITH_RC4_128_SHA", "RSA", "RC4", "SHA-1", false},
		{"TLS_RSA_WITH_3DES_EDE_CBC_SHA", "RSA", "3DES", "SHA-1", false},
		{"", "", "", "", false},
	}
	for _, c := range cases {
		s := Parse(c.name)
		if s.KeyExchange != c.kx || s.Cipher != c.cipher || s.MAC != c.mac || s.ForwardSecret != c.fs {
			t.Errorf("Parse(%q) = %+v, want %s %s %s fs=%v", c.name, s, c.kx, c.cipher, c.mac, c.fs)
		}
	}
}

func TestNormalizeVersion(t *testing.T) {
	for in, want := range map[string]string{"TLSv1.2": "TLSv1.2", "TLS 1.3": "TLSv1.3",
		"TLSv1": "TLSv1", "SSLv3": "SSLv3", "": "", "weird": "weird"} {
		if got := NormalizeVersion(in); got != want {
			t.Errorf("NormalizeVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"ECDHE-RSA-AES128-GCM-SHA256", "TLS_AES_128_GCM_SHA256", "TLS_RSA_WITH_RC4_128_SHA", "-", "A-B-C-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		su := Parse(s)
		if su.Name != s {
			t.Fatal("name not kept")
		}
	})
}
