// Regenerates dashboard/world.json, the outlines the dashboard draws, from three npm packages:
//   world-atlas 2.x (countries-110m.json: Natural Earth 1:110m admin-0 outlines, public domain,
//   ISO 3166-1 numeric ids), i18n-iso-countries (numeric → alpha-2 codes, MIT) and
//   countries-list (alpha-2 → continent, MIT).
//
//   npm pack world-atlas i18n-iso-countries countries-list   # then unpack each tarball
//   node dashboard/tools/world.mjs ATLAS_DIR ISO_DIR CONTINENTS_DIR > dashboard/world.json
//
// Output: {"width", "height", "countries": [[alpha-2, continent, name, svg path], ...]}, the path
// in an equirectangular projection, whole units of WIDTH/360 degrees, relative moves. Maintainers
// only: users never run this (the JSON is committed and compiled into the binary).
import { readFileSync } from "node:fs";

const [atlasDir, isoDir, listDir] = process.argv.slice(2);
if (!listDir) {
  console.error("usage: node world.mjs ATLAS_DIR ISO_DIR CONTINENTS_DIR");
  process.exit(2);
}
const read = (p) => JSON.parse(readFileSync(p, "utf8"));
const topo = read(`${atlasDir}/countries-110m.json`);
const numeric = new Map(read(`${isoDir}/codes.json`).map(([a2, , n]) => [n, a2]));
const continents = read(`${listDir}/countries.min.json`);
// Natural Earth outlines without an ISO numeric code; MaxMind uses XK for Kosovo.
const byName = { Kosovo: "XK" };

const WIDTH = 1440;
const k = WIDTH / 360;
// Latitudes shown: the far south is Antarctica's interior, of no use for steering.
const NORTH = 84;
const SOUTH = -60;
const HEIGHT = Math.round((NORTH - SOUTH) * k);

const [sx, sy] = topo.transform.scale;
const [tx, ty] = topo.transform.translate;
const arcs = topo.arcs.map((arc) => {
  let x = 0;
  let y = 0;
  return arc.map(([dx, dy]) => {
    x += dx;
    y += dy;
    return [Math.round((x * sx + tx + 180) * k), Math.round((NORTH - (y * sy + ty)) * k)];
  });
});
const ring = (indexes) => {
  const points = [];
  for (const i of indexes) {
    const arc = i < 0 ? arcs[~i].slice().reverse() : arcs[i];
    points.push(...(points.length ? arc.slice(1) : arc));
  }
  return points;
};
// A ring that crosses the antimeridian (Russia, Fiji) jumps by nearly the whole width between
// two points: unwrap it into one continuous ring past the map's edge, and draw it a second
// time shifted by the width, so the part past the edge shows on the other side.
const unwrap = (points) => {
  let shift = 0;
  return points.map(([x, y], i) => {
    if (i > 0) {
      const dx = x + shift - (points[i - 1][0] + shiftAt[i - 1]);
      if (dx > WIDTH / 2) shift -= WIDTH;
      else if (dx < -WIDTH / 2) shift += WIDTH;
    }
    shiftAt[i] = shift;
    return [x + shift, y];
  });
};
let shiftAt = [];
const copies = (points) => {
  shiftAt = [];
  const ring = unwrap(points);
  const xs = ring.map((p) => p[0]);
  const out = [ring];
  if (Math.max(...xs) > WIDTH) out.push(ring.map(([x, y]) => [x - WIDTH, y]));
  if (Math.min(...xs) < 0) out.push(ring.map(([x, y]) => [x + WIDTH, y]));
  return out;
};
const path = (rings) => {
  let d = "";
  for (const points of rings.flatMap(copies)) {
    const kept = points.filter(
      (p, i) => i === 0 || p[0] !== points[i - 1][0] || p[1] !== points[i - 1][1],
    );
    if (kept.length < 4) continue;
    let [x, y] = kept[0];
    d += `M${x} ${y}l`;
    const steps = [];
    for (const [px, py] of kept.slice(1)) {
      steps.push(`${px - x} ${py - y}`);
      [x, y] = [px, py];
    }
    d += steps.join(" ").replace(/ -/g, "-") + "z";
  }
  return d;
};

const countries = [];
for (const g of topo.objects.countries.geometries) {
  const polygons = g.type === "Polygon" ? [g.arcs] : g.arcs;
  const d = path(polygons.flatMap((p) => p.map(ring)));
  if (!d) continue;
  const cc = numeric.get(g.id) ?? byName[g.properties.name] ?? "";
  const continent = cc === "XK" ? "EU" : (continents[cc]?.continent ?? "");
  countries.push([cc, continent, g.properties.name, d]);
}
countries.sort((a, b) => (a[0] + a[2]).localeCompare(b[0] + b[2]));
process.stdout.write(
  JSON.stringify({
    source: "Natural Earth 1:110m admin-0 countries (public domain), via world-atlas 2",
    width: WIDTH,
    height: HEIGHT,
    countries,
  }) + "\n",
);
