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

// DKIMClass is the Table 8 class ("Gmail DKIM Errors") of a signature
// that did not pass: exactly one per failing signature, "" for a pass and
// for signatures not verified (policy).
type DKIMClass string

// DKIM failure classes of Table 8.
const (
	DKIMWeakKey        DKIMClass = "weak_key"              // the key is shorter than RFC 8301 section 3.2 allows
	DKIMRevoked        DKIMClass = "revoked"               // empty p= (RFC 6376 section 3.6.1)
	DKIMUnsupportedAlg DKIMClass = "unsupported_algorithm" // hash, key type or canonicalization not supported
	DKIMExpired        DKIMClass = "expired"               // x= in the past (RFC 6376 section 3.5)
	DKIMBodyHash       DKIMClass = "body_hash"             // bh= does not match the body
	DKIMVersion        DKIMClass = "version"               // v= other than 1 (signature or key record)
	DKIMDuplicateTags  DKIMClass = "duplicate_tags"        // a tag given twice (RFC 6376 section 3.2)
	DKIMOther          DKIMClass = "other"                 // any other failure; Detail says which
)

// Signature is the verdict on one DKIM-Signature.
type Signature struct {
	Domain    string
	Selector  string
	Algorithm string
	KeyBits   int // 0 when the key was not found or unparsable
	Result    DKIMStatus
	Class     DKIMClass // for fail/permerror/temperror
	Detail    string    // finer reason: no_key, header_sig, dns_temp, syntax, over_limit, …
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
	return Signature{Result: DKIMPolicy, Detail: DKIMOverLimit, Omitted: n,
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
			s.Result, s.Detail = DKIMPolicy, DKIMOverLimit
		case v.failed != nil:
			s.Result, s.Class, s.Detail, s.Err = DKIMPermError, DKIMOther, "syntax", v.failed.Error()
		case i < len(v.result):
			s.Result, s.Class, s.Detail, s.Err = v.result[i].Result, v.result[i].Class, v.result[i].Detail, v.result[i].Err
		default:
			s.Result, s.Detail = DKIMPolicy, DKIMOverLimit
		}
		if s.Class == DKIMOther && tags.Duplicate != "" {
			s.Class = DKIMDuplicateTags
		}
		if synErr != nil && s.Result != DKIMPolicy && s.Class != DKIMDuplicateTags {
			// RFC 6376 3.2: a malformed tag-list is a permanent failure,
			// whatever go-msgauth made of it.
			s.Result, s.Class, s.Detail, s.Err = DKIMPermError, DKIMOther, "syntax", synErr.Error()
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
	err    error
	result DKIMStatus
	class  DKIMClass
	detail string
}{
	{dkim.ErrKeyUnavailable, DKIMTempError, DKIMOther, "dns_temp"},
	{dkim.ErrKeyTooShort, DKIMPermError, DKIMWeakKey, ""},
	{dkim.ErrKeyRevoked, DKIMPermError, DKIMRevoked, ""},
	{dkim.ErrExpired, DKIMPermError, DKIMExpired, ""},
	{dkim.ErrBodyHash, DKIMFail, DKIMBodyHash, ""},
	{dkim.ErrSignature, DKIMFail, DKIMOther, "header_sig"},
	{dkim.ErrSignatureVersion, DKIMPermError, DKIMVersion, ""},
	{dkim.ErrKeyVersion, DKIMPermError, DKIMVersion, "key_version"},
	{dkim.ErrDuplicateTag, DKIMPermError, DKIMDuplicateTags, ""},
	{dkim.ErrWeakHash, DKIMPermError, DKIMUnsupportedAlg, "sha1"},
	{dkim.ErrUnsupportedHash, DKIMPermError, DKIMUnsupportedAlg, "hash"},
	{dkim.ErrUnsupportedKeyAlgorithm, DKIMPermError, DKIMUnsupportedAlg, "key"},
	{dkim.ErrMalformedAlgorithm, DKIMPermError, DKIMUnsupportedAlg, "syntax"},
	{dkim.ErrInappropriateKey, DKIMPermError, DKIMUnsupportedAlg, "key_hash"},
	{dkim.ErrInappropriateHash, DKIMPermError, DKIMUnsupportedAlg, "key_hash"},
	{dkim.ErrUnsupportedHeaderCanon, DKIMPermError, DKIMUnsupportedAlg, "canon"},
	{dkim.ErrUnsupportedBodyCanon, DKIMPermError, DKIMUnsupportedAlg, "canon"},
	{dkim.ErrUnsupportedQueryMethod, DKIMPermError, DKIMUnsupportedAlg, "query"},
	{dkim.ErrNoKey, DKIMPermError, DKIMOther, "no_key"},
	{dkim.ErrNoValidKey, DKIMPermError, DKIMOther, "no_key"},
	{dkim.ErrMultipleKeys, DKIMPermError, DKIMOther, "no_key"},
	{dkim.ErrKeySyntax, DKIMPermError, DKIMOther, "key_syntax"},
	{dkim.ErrKeyRecord, DKIMPermError, DKIMOther, "key_syntax"},
	{dkim.ErrBodyLengthTag, DKIMFail, DKIMOther, "l_tag"},
	{dkim.ErrDomainMismatch, DKIMPermError, DKIMOther, "syntax"},
	{dkim.ErrFromNotSigned, DKIMPermError, DKIMOther, "from_not_signed"},
	{dkim.ErrMissingTag, DKIMPermError, DKIMOther, "syntax"},
	{dkim.ErrSignatureTags, DKIMPermError, DKIMOther, "syntax"},
	{dkim.ErrMalformedTime, DKIMPermError, DKIMOther, "syntax"},
	{dkim.ErrMalformedExpiration, DKIMPermError, DKIMOther, "syntax"},
	{dkim.ErrMalformedBodyHash, DKIMPermError, DKIMOther, "syntax"},
	{dkim.ErrMalformedSignature, DKIMPermError, DKIMOther, "syntax"},
}

// ClassifyDKIM returns the result, Table 8 class and detail for one
// go-msgauth verification error (nil means pass).
func ClassifyDKIM(err error) (result DKIMStatus, class DKIMClass, detail string) {
	if err == nil {
		return DKIMPass, "", ""
	}
	for _, c := range dkimClasses {
		if errors.Is(err, c.err) {
			return c.result, c.class, c.detail
		}
	}
	if dkim.IsTempFail(err) {
		return DKIMTempError, DKIMOther, "dns_temp"
	}
	return DKIMPermError, DKIMOther, ""
}

// DKIMStatus is the result of a DKIM signature (RFC 6376 section 6.1)
// as the dkim method of Authentication-Results writes it (RFC 8601
// section 2.7.1). Signature.Result holds one; DKIMVerdict gives the
// message's.
type DKIMStatus string

// DKIM results, RFC 8601 section 2.7.1.
const (
	DKIMPass      DKIMStatus = "pass"
	DKIMFail      DKIMStatus = "fail"      // the signature or body hash did not verify
	DKIMNeutral   DKIMStatus = "neutral"   // could not be processed, for reasons not covered below
	DKIMPolicy    DKIMStatus = "policy"    // not acceptable to us: here, beyond a per-message limit
	DKIMTempError DKIMStatus = "temperror" // the key could not be fetched for now
	DKIMPermError DKIMStatus = "permerror" // the signature or key cannot be used
	DKIMNone      DKIMStatus = "none"      // the message has no signature
)

// dkimVerdictOrder ranks signature results for the message verdict: a
// pass decides; without one, a temporary failure comes first, since the
// same message may pass later (as DMARC treats it, RFC 7489 6.6.2), then
// a failed verification, then a signature that could not be checked.
var dkimVerdictOrder = []DKIMStatus{DKIMPass, DKIMTempError, DKIMFail, DKIMPermError, DKIMNeutral, DKIMPolicy}

// DKIMVerdict is the message's DKIM result in RFC 8601 terms, the one the
// store, the metrics and the report count: none without signatures, pass
// if any signature passes, else the first of dkimVerdictOrder that some
// signature has. It never folds permerror or temperror into fail, so the
// store says what the Authentication-Results header said.
func DKIMVerdict(sigs []Signature) DKIMStatus {
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
