package corpus

import (
	"bytes"
	"strings"
)

// Field is one raw header field as an MTA hands it to a milter: the value
// after the colon, leading space kept, folds as LF.
type Field struct {
	Name, Value string
}

// Split cuts a CRLF message into header fields and body.
func Split(msg []byte) ([]Field, []byte) {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, msg
	}
	head, body := string(msg[:end+2]), msg[end+4:]
	var fields []Field
	for _, line := range strings.SplitAfter(head, "\r\n") {
		if line == "" {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			f := &fields[len(fields)-1]
			f.Value += "\n" + strings.TrimSuffix(line, "\r\n")
			continue
		}
		name, value, _ := strings.Cut(strings.TrimSuffix(line, "\r\n"), ":")
		fields = append(fields, Field{Name: name, Value: value})
	}
	return fields, body
}

// Want returns what the report must count for cases, keyed like the JSON
// report's maps: spf, spf_error_class, dkim, dkim_fail_class, dmarc,
// dmarc_policy, auth.
func Want(cases []Case) map[string]map[string]int64 {
	w := map[string]map[string]int64{}
	inc := func(m, k string) {
		if w[m] == nil {
			w[m] = map[string]int64{}
		}
		w[m][k]++
	}
	for _, c := range cases {
		inc("spf", c.SPF)
		if c.SPFClass != "" {
			inc("spf_error_class", c.SPFClass)
		}
		inc("dkim", c.DKIM)
		for _, f := range c.DKIMFails {
			inc("dkim_fail_class", f)
		}
		inc("dmarc", c.DMARC)
		inc("dmarc_policy", c.Policy)
		inc("auth", c.Auth)
	}
	return w
}
