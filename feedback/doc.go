// Package feedback gathers, sends and reads the reports mail domains send
// each other: DMARC aggregate reports (RFC 7489 section 7.2) for the mail
// the milter received, SMTP TLS reports (RFC 8460) for the deliveries the
// MTA log shows, and the reports of both kinds that receivers send us.
package feedback
