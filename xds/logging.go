package xds

import (
	"fmt"
	"log/slog"
)

// logAdapter routes go-control-plane's printf-style logs into slog. Its
// debug and info chatter (one line per request) stays at debug level.
type logAdapter struct{ log *slog.Logger }

func (l logAdapter) Debugf(format string, args ...any) { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l logAdapter) Infof(format string, args ...any)  { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l logAdapter) Warnf(format string, args ...any)  { l.log.Warn(fmt.Sprintf(format, args...)) }
func (l logAdapter) Errorf(format string, args ...any) { l.log.Error(fmt.Sprintf(format, args...)) }
