package report

// CleanText is the text encoder of every report (escape.go), for commands
// that lay out their own text, such as snowrain audit: controls, bidi and
// invalid UTF-8 come out as visible escapes, never acted on by a terminal.
func CleanText(s string) string { return cleanText(s) }
