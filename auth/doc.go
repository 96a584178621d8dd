// Package auth checks the sender authentication of one message: SPF on the
// envelope, every DKIM signature, and DMARC over both, and writes the
// Authentication-Results header. Each failure is given the error class of
// the paper's tables (Table 8 for DKIM, Table 21 for SPF, Table 18 for
// DMARC policies, Table 17 for the overall method).
package auth
