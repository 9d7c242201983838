package main

import (
	"encoding/json"
	"fmt"
	"io"
	"unicode/utf8"
)

// outputFlag is -o: how a command prints what it found.
type outputFlag struct{ format string }

func (o *outputFlag) register(fs *flagSet) {
	fs.StringVar(&o.format, "o", "text", "output format: text or json")
}

// check is called with the other usage checks, before connecting.
func (o *outputFlag) check(fs *flagSet) int {
	if o.format != "" && o.format != "text" && o.format != "json" {
		return usageErr(fs, fs.stderr, "-o %q: want text or json", o.format)
	}
	return -1
}

func (o *outputFlag) json() bool { return o.format == "json" }

// writeJSON prints v as one line of JSON, so that a stream of them (from
// observe) is JSON Lines and a single one is a document.
func writeJSON(stdout, stderr io.Writer, v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return fail(stderr, "encode JSON: %v", err)
	}
	if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil {
		return fail(stderr, "write: %v", err)
	}
	return 0
}

// payloadJSON is a message payload in JSON: always as base64, and also as
// text when it is valid UTF-8, which is what jq users want to read.
type payloadJSON struct {
	Text   *string `json:"payload,omitempty"`
	Base64 []byte  `json:"payload_base64"`
}

func newPayloadJSON(p []byte) payloadJSON {
	out := payloadJSON{Base64: p}
	if out.Base64 == nil {
		out.Base64 = []byte{}
	}
	if utf8.Valid(p) {
		s := string(p)
		out.Text = &s
	}
	return out
}
