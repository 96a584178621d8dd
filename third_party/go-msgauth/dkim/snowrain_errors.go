package dkim

// snowrain patch: exported errors for every verification failure, so a
// caller tells them apart with errors.Is instead of reading the text (a
// text that quotes the signer's selector, domain or tags). Each is the
// value upstream built at its one return site; the texts, and what
// IsPermFail and IsTempFail say, are unchanged. See PATCHES.md.

import "errors"

// Errors of the public key lookup and record (RFC 6376 section 3.6).
var (
	ErrKeyUnavailable          = tempFailError("key unavailable")      // wraps the DNS error
	ErrNoKey                   = permFailError("no key for signature") // wraps the DNS error
	ErrNoValidKey              = permFailError("no valid key found")
	ErrMultipleKeys            = permFailError("multiple TXT records found for key")
	ErrKeyRecord               = permFailError("key record error") // wraps the tag-list error
	ErrKeyVersion              = permFailError("incompatible public key version")
	ErrKeySyntax               = permFailError("key syntax error") // wraps what is wrong
	ErrKeyRevoked              = permFailError("key revoked")
	ErrKeyTooShort             = permFailError("key is too short") // RFC 8301 section 3.2
	ErrKeySize                 = permFailError("invalid Ed25519 public key size")
	ErrUnsupportedKeyAlgorithm = permFailError("unsupported key algorithm")
)

// Errors of the DKIM-Signature header field (RFC 6376 section 3.5).
var (
	ErrSignatureTags          = permFailError("malformed signature tags") // wraps the tag-list error
	ErrSignatureVersion       = permFailError("incompatible signature version")
	ErrMissingTag             = permFailError("signature missing required tag")
	ErrDomainMismatch         = permFailError("domain mismatch")
	ErrFromNotSigned          = permFailError("From field not signed")
	ErrMalformedTime          = permFailError("malformed time")            // wraps the strconv error
	ErrMalformedExpiration    = permFailError("malformed expiration time") // wraps the strconv error
	ErrExpired                = permFailError("signature has expired")
	ErrUnsupportedQueryMethod = permFailError("unsupported public key query method")
	ErrMalformedAlgorithm     = permFailError("malformed algorithm name")
	ErrInappropriateHash      = permFailError("inappropriate hash algorithm")
	ErrWeakHash               = permFailError("hash algorithm too weak") // RFC 8301 section 3.1
	ErrUnsupportedHash        = permFailError("unsupported hash algorithm")
	ErrInappropriateKey       = permFailError("inappropriate key algorithm")
	ErrInappropriateService   = permFailError("inappropriate service")
	ErrUnsupportedHeaderCanon = permFailError("unsupported header canonicalization algorithm")
	ErrUnsupportedBodyCanon   = permFailError("unsupported body canonicalization algorithm")
	ErrMalformedBodyHash      = permFailError("malformed body hash") // wraps the base64 error
	ErrMalformedSignature     = permFailError("malformed signature") // wraps the base64 error
	ErrBodyLengthTag          = failError("message contains an insecure body length tag")
	ErrBodyHash               = failError("body hash did not verify")
	ErrSignature              = failError("signature did not verify") // wraps the crypto error
)

// Errors of a tag-list (RFC 6376 section 3.2), wrapped by ErrKeyRecord or
// ErrSignatureTags.
var (
	ErrMalformedTagList = errors.New("dkim: malformed header params")
	ErrDuplicateTag     = errors.New("dkim: duplicate tag name")
)

// classError is one of the errors above with what went wrong in detail:
// its text is the class's, ": ", then the detail's, as upstream wrote it.
type classError struct {
	class  error // permFailError, tempFailError or failError
	detail error
}

func wrapClass(class, detail error) error { return &classError{class, detail} }

func (e *classError) Error() string   { return e.class.Error() + ": " + e.detail.Error() }
func (e *classError) Unwrap() []error { return []error{e.class, e.detail} }

// failClass is the permFailError, tempFailError or failError that err is
// or carries, for IsPermFail, IsTempFail and isFail.
func failClass(err error) error {
	if c, ok := err.(*classError); ok {
		return c.class
	}
	return err
}
