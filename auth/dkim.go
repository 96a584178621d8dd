package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/snowrain/snowrain/resolver"
)

// DKIM failure classes of Table 8: exactly one per failing signature.
const (
	DKIMWeakKey        = "weak_key"
	DKIMRevoked        = "revoked"
	DKIMUnsupportedAlg = "unsupported_algorithm"
	DKIMExpired        = "expired"
	DKIMBodyHash       = "body_hash"
	DKIMVersion        = "version"
	DKIMDuplicateTags  = "duplicate_tags"
	DKIMOther          = "other"
)

// Signature is the verdict on one DKIM-Signature.
type Signature struct {
	Domain    string
	Selector  string
	Algorithm string
	KeyBits   int    // 0 when the key was not found or unparsable
	Result    string // pass, fail, temperror, permerror, policy
	Class     string // Table 8 class, for fail/permerror/temperror
	Detail    string // finer reason: no_key, header_sig, dns_temp, syntax, over_limit, …
	Err       string
	// Omitted, when above 0, makes this the one record standing for that
	// many signatures beyond the per-message cap (Result policy, Detail
	// over_limit, no tags): a message with 1,000 signatures is not 1,000
	// rows.
	Omitted int
}

// DKIMOverLimit is the Detail of signatures not verified because of a
// per-message limit (signature count or header size).
const DKIMOverLimit = "over_limit"

// OverLimit returns the record standing for n signatures beyond the cap.
func OverLimit(n int) Signature {
	return Signature{Result: "policy", Detail: DKIMOverLimit, Omitted: n,
		Err: fmt.Sprintf("%d more signatures than the per-message limit", n)}
}

// DKIMVerifier verifies the DKIM signatures of a message streamed into it:
// the header block first, then the body, so a 25 MB message never sits in
// memory.
type DKIMVerifier struct {
	pw      *io.PipeWriter
	done    chan struct{}
	result  []Signature
	failed  error // the whole verification failed (unparsable header block)
	over    bool  // more signatures than the cap
	dropped bool  // Abandon: the message was over a limit
	writeOK bool

	mu   sync.Mutex
	keys map[string][]string // TXT answers seen, by query name
}

// NewDKIMVerifier starts verifying. max caps the signatures verified
// (RFC 6376 section 6.1 lets a verifier limit them); the rest are recorded
// with result "policy".
func NewDKIMVerifier(ctx context.Context, r resolver.Resolver, max int) *DKIMVerifier {
	pr, pw := io.Pipe()
	v := &DKIMVerifier{pw: pw, done: make(chan struct{}), writeOK: true, keys: map[string][]string{}}
	opts := &dkim.VerifyOptions{MaxVerifications: max, LookupTXT: v.lookup(ctx, r)}
	go v.run(pr, opts)
	return v
}

func (v *DKIMVerifier) lookup(ctx context.Context, r resolver.Resolver) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		txt, err := r.LookupTXT(ctx, name)
		v.mu.Lock()
		v.keys[strings.ToLower(strings.TrimSuffix(name, "."))] = txt
		v.mu.Unlock()
		return txt, err
	}
}

// Write feeds message bytes (CRLF line endings, header block then body).
// After a failure inside the verifier it discards the input.
func (v *DKIMVerifier) Write(p []byte) (int, error) {
	if !v.writeOK {
		return len(p), nil
	}
	if _, err := v.pw.Write(p); err != nil {
		v.writeOK = false
	}
	return len(p), nil
}

// errAbandoned ends the verification of a message over a limit.
var errAbandoned = errors.New("dkim: message over the header size limit")

// Abandon stops verifying: the message is over a limit. The rest of the
// message need not be written; Close reports every signature as policy,
// over_limit.
func (v *DKIMVerifier) Abandon() {
	v.dropped = true
	v.writeOK = false
	v.pw.CloseWithError(errAbandoned)
}

// Close ends the message and returns one Signature per DKIM-Signature
// header, in header order. headers are the raw DKIM-Signature values, used
// to fill the columns go-msgauth does not report.
func (v *DKIMVerifier) Close(headers []string) []Signature {
	v.pw.Close()
	<-v.done
	var out []Signature
	for i, h := range headers {
		tags, synErr := ParseSignatureTags(h)
		s := Signature{Domain: tags.Domain, Selector: tags.Selector, Algorithm: tags.Algorithm}
		switch {
		case v.dropped:
			s.Result, s.Detail = "policy", DKIMOverLimit
		case v.failed != nil:
			s.Result, s.Class, s.Detail, s.Err = "permerror", DKIMOther, "syntax", v.failed.Error()
		case i < len(v.result):
			s.Result, s.Class, s.Detail, s.Err = v.result[i].Result, v.result[i].Class, v.result[i].Detail, v.result[i].Err
		default:
			s.Result, s.Detail = "policy", DKIMOverLimit
		}
		if s.Class == DKIMOther && tags.Duplicate != "" {
			s.Class = DKIMDuplicateTags
		}
		if synErr != nil && s.Result != "policy" && s.Class != DKIMDuplicateTags {
			// RFC 6376 3.2: a malformed tag-list is a permanent failure,
			// whatever go-msgauth made of it.
			s.Result, s.Class, s.Detail, s.Err = "permerror", DKIMOther, "syntax", synErr.Error()
		}
		s.KeyBits = v.keyBits(tags)
		out = append(out, s)
	}
	return out
}

func (v *DKIMVerifier) keyBits(t SignatureTags) int {
	v.mu.Lock()
	txt := v.keys[strings.ToLower(t.Selector+"._domainkey."+t.Domain)]
	v.mu.Unlock()
	for _, rec := range txt {
		if n := KeyBits(rec); n > 0 {
			return n
		}
	}
	return 0
}

// KeyBits returns the size of the public key in a DKIM key record, or 0.
func KeyBits(record string) int {
	var p, k string
	for _, spec := range strings.Split(record, ";") {
		name, val, _ := strings.Cut(strings.TrimSpace(spec), "=")
		switch strings.TrimSpace(name) {
		case "p":
			p = stripFWS(val)
		case "k":
			k = strings.TrimSpace(val)
		}
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil || len(der) == 0 {
		return 0
	}
	if k == "ed25519" {
		if len(der) == ed25519.PublicKeySize {
			return 256
		}
		return 0
	}
	key, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		if rk, err2 := x509.ParsePKCS1PublicKey(der); err2 == nil {
			return rk.N.BitLen()
		}
		return 0
	}
	if rk, ok := key.(*rsa.PublicKey); ok {
		return rk.N.BitLen()
	}
	return 0
}

func (v *DKIMVerifier) run(pr *io.PipeReader, opts *dkim.VerifyOptions) {
	defer close(v.done)
	defer func() {
		if p := recover(); p != nil {
			v.failed = fmt.Errorf("dkim: verifier panic: %v", p)
			pr.CloseWithError(v.failed)
		}
	}()
	verifs, err := dkim.VerifyWithOptions(pr, opts)
	// go-msgauth may stop reading early; drain so the milter never blocks.
	io.Copy(io.Discard, pr)
	switch {
	case errors.Is(err, dkim.ErrTooManySignatures):
		v.over = true
	case err != nil:
		v.failed = err
		return
	}
	for _, vf := range verifs {
		res, class, detail := ClassifyDKIM(vf.Err)
		s := Signature{Result: res, Class: class, Detail: detail}
		if vf.Err != nil {
			s.Err = vf.Err.Error()
		}
		v.result = append(v.result, s)
	}
}

// dkimClasses maps go-msgauth's verification errors to Table 8 classes,
// first match wins: a duplicate tag decides before the malformed tag-list
// or key record that wraps it. The errors are exported by our patched copy
// (third_party/go-msgauth/PATCHES.md), so a signer's selector, domain or
// tags, which the error texts quote, never pick the class.
var dkimClasses = []struct {
	err                   error
	result, class, detail string
}{
	{dkim.ErrKeyUnavailable, "temperror", DKIMOther, "dns_temp"},
	{dkim.ErrKeyTooShort, "permerror", DKIMWeakKey, ""},
	{dkim.ErrKeyRevoked, "permerror", DKIMRevoked, ""},
	{dkim.ErrExpired, "permerror", DKIMExpired, ""},
	{dkim.ErrBodyHash, "fail", DKIMBodyHash, ""},
	{dkim.ErrSignature, "fail", DKIMOther, "header_sig"},
	{dkim.ErrSignatureVersion, "permerror", DKIMVersion, ""},
	{dkim.ErrKeyVersion, "permerror", DKIMVersion, "key_version"},
	{dkim.ErrDuplicateTag, "permerror", DKIMDuplicateTags, ""},
	{dkim.ErrWeakHash, "permerror", DKIMUnsupportedAlg, "sha1"},
	{dkim.ErrUnsupportedHash, "permerror", DKIMUnsupportedAlg, "hash"},
	{dkim.ErrUnsupportedKeyAlgorithm, "permerror", DKIMUnsupportedAlg, "key"},
	{dkim.ErrMalformedAlgorithm, "permerror", DKIMUnsupportedAlg, "syntax"},
	{dkim.ErrInappropriateKey, "permerror", DKIMUnsupportedAlg, "key_hash"},
	{dkim.ErrInappropriateHash, "permerror", DKIMUnsupportedAlg, "key_hash"},
	{dkim.ErrUnsupportedHeaderCanon, "permerror", DKIMUnsupportedAlg, "canon"},
	{dkim.ErrUnsupportedBodyCanon, "permerror", DKIMUnsupportedAlg, "canon"},
	{dkim.ErrUnsupportedQueryMethod, "permerror", DKIMUnsupportedAlg, "query"},
	{dkim.ErrNoKey, "permerror", DKIMOther, "no_key"},
	{dkim.ErrNoValidKey, "permerror", DKIMOther, "no_key"},
	{dkim.ErrMultipleKeys, "permerror", DKIMOther, "no_key"},
	{dkim.ErrKeySyntax, "permerror", DKIMOther, "key_syntax"},
	{dkim.ErrKeyRecord, "permerror", DKIMOther, "key_syntax"},
	{dkim.ErrBodyLengthTag, "fail", DKIMOther, "l_tag"},
	{dkim.ErrDomainMismatch, "permerror", DKIMOther, "syntax"},
	{dkim.ErrFromNotSigned, "permerror", DKIMOther, "from_not_signed"},
	{dkim.ErrMissingTag, "permerror", DKIMOther, "syntax"},
	{dkim.ErrSignatureTags, "permerror", DKIMOther, "syntax"},
	{dkim.ErrMalformedTime, "permerror", DKIMOther, "syntax"},
	{dkim.ErrMalformedExpiration, "permerror", DKIMOther, "syntax"},
	{dkim.ErrMalformedBodyHash, "permerror", DKIMOther, "syntax"},
	{dkim.ErrMalformedSignature, "permerror", DKIMOther, "syntax"},
}

// ClassifyDKIM returns the result, Table 8 class and detail for one
// go-msgauth verification error (nil means pass).
func ClassifyDKIM(err error) (result, class, detail string) {
	if err == nil {
		return "pass", "", ""
	}
	for _, c := range dkimClasses {
		if errors.Is(err, c.err) {
			return c.result, c.class, c.detail
		}
	}
	if dkim.IsTempFail(err) {
		return "temperror", DKIMOther, "dns_temp"
	}
	return "permerror", DKIMOther, ""
}

// RFC 8601 section 2.7.1 results of a DKIM signature, as the
// Authentication-Results header writes them. Signature.Result holds one;
// DKIMVerdict gives the message's.
const (
	DKIMPass      = "pass"
	DKIMFail      = "fail"
	DKIMNeutral   = "neutral"
	DKIMPolicy    = "policy"
	DKIMTempError = "temperror"
	DKIMPermError = "permerror"
	DKIMNone      = "none" // the message has no signature
)

// dkimVerdictOrder ranks signature results for the message verdict: a
// pass decides; without one, a temporary failure comes first, since the
// same message may pass later (as DMARC treats it, RFC 7489 6.6.2), then
// a failed verification, then a signature that could not be checked.
var dkimVerdictOrder = []string{DKIMPass, DKIMTempError, DKIMFail, DKIMPermError, DKIMNeutral, DKIMPolicy}

// DKIMVerdict is the message's DKIM result in RFC 8601 terms, the one the
// store, the metrics and the report count: none without signatures, pass
// if any signature passes, else the first of dkimVerdictOrder that some
// signature has. It never folds permerror or temperror into fail, so the
// store says what the Authentication-Results header said.
func DKIMVerdict(sigs []Signature) string {
	if len(sigs) == 0 {
		return DKIMNone
	}
	best := len(dkimVerdictOrder)
	for _, s := range sigs {
		for i, r := range dkimVerdictOrder {
			if s.Result == r && i < best {
				best = i
			}
		}
	}
	if best == len(dkimVerdictOrder) {
		return DKIMPermError // a result we do not know is not a pass
	}
	return dkimVerdictOrder[best]
}
