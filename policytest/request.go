package policytest

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// curlUserAgent is the User-Agent a request gets unless it names one, as
// curl sends its own.
const curlUserAgent = "curl/8.5.0"

// Request is one HTTP request as curl would send it.
type Request struct {
	Method string
	// Scheme and Authority are the URL's; Target is its path and query as
	// written, which curl sends as they are.
	Scheme, Authority, Target string
	// Headers in the order given; the host is Authority unless a Host
	// header names another.
	Headers [][2]string
	Body    []byte
}

// ParseCurl reads a request written as curl's arguments: the URL and
// -X/--request, -H/--header, -d/--data, --data-raw, --data-binary (with
// @file to read a file; -d drops its line breaks as curl does) and
// -A/--user-agent. As curl does, data makes the method POST and the content
// type application/x-www-form-urlencoded unless given, and the request
// carries User-Agent and Accept: */* unless given.
func ParseCurl(args []string) (Request, error) {
	var r Request
	var data [][]byte
	userAgent := curlUserAgent
	for i := 0; i < len(args); i++ {
		arg := args[i]
		value := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", arg)
			}
			i++
			return args[i], nil
		}
		var err error
		var v string
		switch arg {
		case "-X", "--request":
			if v, err = value(); err == nil {
				r.Method = strings.ToUpper(v)
			}
		case "-H", "--header":
			if v, err = value(); err == nil {
				name, val, ok := strings.Cut(v, ":")
				if !ok || strings.TrimSpace(name) == "" {
					return Request{}, fmt.Errorf("header %q is not Name: value", v)
				}
				r.Headers = append(r.Headers, [2]string{strings.TrimSpace(name), strings.TrimSpace(val)})
			}
		case "-A", "--user-agent":
			userAgent, err = value()
		case "-d", "--data", "--data-raw", "--data-binary":
			if v, err = value(); err == nil {
				var d []byte
				d, err = readData(arg, v)
				data = append(data, d)
			}
		default:
			if strings.HasPrefix(arg, "-") {
				return Request{}, fmt.Errorf("curl option %s is not supported here", arg)
			}
			if r.Authority != "" {
				return Request{}, fmt.Errorf("a second URL %q: one request at a time", arg)
			}
			err = r.setURL(arg)
		}
		if err != nil {
			return Request{}, err
		}
	}
	if r.Authority == "" {
		return Request{}, errors.New("no URL")
	}
	if data != nil {
		r.Body = bytes.Join(data, []byte("&"))
		if r.Method == "" {
			r.Method = "POST"
		}
		r.setDefault("Content-Type", "application/x-www-form-urlencoded")
	}
	if r.Method == "" {
		r.Method = "GET"
	}
	r.setDefault("User-Agent", userAgent)
	r.setDefault("Accept", "*/*")
	return r, nil
}

// setURL takes the scheme, authority and target of an absolute URL,
// keeping the target as written.
func (r *Request) setURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("URL %q needs a scheme and a host, as curl's", raw)
	}
	r.Scheme, r.Authority = u.Scheme, u.Host
	rest := strings.TrimPrefix(raw[len(u.Scheme)+len("://"):], u.Host)
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		rest = rest[:i] // curl does not send the fragment
	}
	r.Target = rest
	if r.Target == "" || r.Target[0] != '/' {
		r.Target = "/" + r.Target
	}
	return nil
}

// readData is one data option's bytes: @file reads the file (curl's -d
// and --data-binary; --data-raw takes @ literally), and -d drops carriage
// returns and newlines from a file, as curl does.
func readData(option, v string) ([]byte, error) {
	file, fromFile := strings.CutPrefix(v, "@")
	if !fromFile || option == "--data-raw" {
		return []byte(v), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", option, v, err)
	}
	if option != "--data-binary" {
		b = bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r"), nil), []byte("\n"), nil)
	}
	return b, nil
}

func (r *Request) header(name string) (string, bool) {
	for _, h := range r.Headers {
		if strings.EqualFold(h[0], name) {
			return h[1], true
		}
	}
	return "", false
}

func (r *Request) setDefault(name, value string) {
	if _, ok := r.header(name); !ok {
		r.Headers = append(r.Headers, [2]string{name, value})
	}
}

// Host is the host the request names: its Host header, else the URL's.
func (r *Request) Host() string {
	if h, ok := r.header("Host"); ok {
		return h
	}
	return r.Authority
}

// check is the request as Envoy's ext_authz filter describes it to the
// agent with meshwaf's configuration (raw header values, the body as
// bytes): pseudo-headers for the method, path, authority and scheme, the
// Host header as :authority, and Content-Length for a body.
func (r *Request) check() (*authv3.CheckRequest, error) {
	path := r.Target
	headers := []*corev3.HeaderValue{
		{Key: ":authority", RawValue: []byte(r.Host())},
		{Key: ":path", RawValue: []byte(path)},
		{Key: ":method", RawValue: []byte(r.Method)},
		{Key: ":scheme", RawValue: []byte(r.Scheme)},
	}
	for _, h := range r.Headers {
		if strings.EqualFold(h[0], "Host") {
			continue
		}
		headers = append(headers, &corev3.HeaderValue{Key: strings.ToLower(h[0]), RawValue: []byte(h[1])})
	}
	if len(r.Body) > 0 {
		if _, ok := r.header("Content-Length"); !ok {
			headers = append(headers, &corev3.HeaderValue{Key: "content-length", RawValue: []byte(strconv.Itoa(len(r.Body)))})
		}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: socketAddress("127.0.0.1", 50000)},
		Destination: &authv3.AttributeContext_Peer{Address: socketAddress("127.0.0.1", 8080)},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method:    r.Method,
			Path:      path,
			Host:      r.Host(),
			Scheme:    r.Scheme,
			Protocol:  "HTTP/1.1",
			Size:      int64(len(r.Body)),
			HeaderMap: &corev3.HeaderMap{Headers: headers},
			RawBody:   r.Body,
		}},
	}}, nil
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}
