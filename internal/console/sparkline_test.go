package console

import (
	"encoding/xml"
	"strconv"
	"strings"
	"testing"
)

// svgDoc is the part of a sparkline the tests read.
type svgDoc struct {
	XMLName xml.Name `xml:"svg"`
	Width   int      `xml:"width,attr"`
	Lines   []struct {
		Class string  `xml:"class,attr"`
		Y1    float64 `xml:"y1,attr"`
		Y2    float64 `xml:"y2,attr"`
	} `xml:"line"`
	Polyline []struct {
		Points string `xml:"points,attr"`
	} `xml:"polyline"`
	Circle []struct{} `xml:"circle"`
}

func parseSVG(t *testing.T, s string) svgDoc {
	t.Helper()
	var d svgDoc
	if err := xml.Unmarshal([]byte(s), &d); err != nil {
		t.Fatalf("sparkline is not well-formed SVG: %v\n%s", err, s)
	}
	return d
}

func ys(t *testing.T, points string) []float64 {
	t.Helper()
	var out []float64
	for _, p := range strings.Fields(points) {
		_, y, ok := strings.Cut(p, ",")
		if !ok {
			t.Fatalf("point %q", p)
		}
		f, err := strconv.ParseFloat(y, 64)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

func TestSparklineWithLimitDrawsLevels(t *testing.T) {
	ps := []point{{0, 1000}, {500, 1000}, {1000, 1000}, {2000, 1000}}
	d := parseSVG(t, string(sparkline(ps, 80, 95)))
	if len(d.Lines) != 2 || d.Lines[0].Class != "warn" || d.Lines[1].Class != "crit" {
		t.Fatalf("want a warning and a critical line, got %+v", d.Lines)
	}
	// y = 39 - pct/100*38: the critical line is above (smaller y) the warning line.
	if d.Lines[0].Y1 != 8.6 || d.Lines[1].Y1 != 2.9 {
		t.Fatalf("level lines at y %.1f and %.1f, want 8.6 and 2.9", d.Lines[0].Y1, d.Lines[1].Y1)
	}
	if len(d.Polyline) != 1 {
		t.Fatalf("want one polyline, got %d", len(d.Polyline))
	}
	y := ys(t, d.Polyline[0].Points)
	want := []float64{39, 20, 1, 1} // 0 %, 50 %, 100 %, over the limit clipped at 100 %
	if len(y) != len(want) {
		t.Fatalf("points %v", y)
	}
	for i := range want {
		if y[i] != want[i] {
			t.Fatalf("point %d at y %.1f, want %.1f (all %v)", i, y[i], want[i], y)
		}
	}
}

func TestSparklineWithoutLimitScalesToMax(t *testing.T) {
	d := parseSVG(t, string(sparkline([]point{{10, 0}, {40, 0}, {20, 0}}, 80, 95)))
	if len(d.Lines) != 0 {
		t.Fatalf("levels drawn without a limit: %+v", d.Lines)
	}
	y := ys(t, d.Polyline[0].Points)
	if y[1] != 1 || y[0] != 29.5 {
		t.Fatalf("unlimited series scaled wrongly: %v", y)
	}
}

func TestSparklineOneAndNoPoint(t *testing.T) {
	if d := parseSVG(t, string(sparkline([]point{{5, 10}}, 80, 95))); len(d.Circle) != 1 || len(d.Polyline) != 0 {
		t.Fatalf("one sample: want a dot, got %+v", d)
	}
	if d := parseSVG(t, string(sparkline(nil, 80, 95))); len(d.Circle)+len(d.Polyline) != 0 || d.Width != sparkW {
		t.Fatalf("no sample: want an empty chart, got %+v", d)
	}
	if s := string(sparkline([]point{{1, 2}, {2, 2}}, 80, 95)); strings.Contains(s, "style=") {
		t.Fatal("style attribute in the sparkline: the console's policy refuses inline styles")
	}
}

// TestSparklineDownsamplesKeepingPeaks draws a day of samples as at most
// one point per unit of width, a single-sample spike still at the top.
func TestSparklineDownsamplesKeepingPeaks(t *testing.T) {
	ps := make([]point, 1440)
	for i := range ps {
		ps[i] = point{100, 1000}
	}
	ps[777] = point{1000, 1000}
	d := parseSVG(t, string(sparkline(ps, 80, 95)))
	y := ys(t, d.Polyline[0].Points)
	if len(y) != sparkW {
		t.Fatalf("%d points drawn, want %d", len(y), sparkW)
	}
	peaks := 0
	for _, v := range y {
		if v == 1 {
			peaks++
		}
	}
	if peaks != 1 {
		t.Fatalf("the spike is drawn %d times, want once", peaks)
	}
}
