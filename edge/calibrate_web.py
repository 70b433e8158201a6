"""``lobbywatch calibrate --web``: count people by clicking them, on a page served to 127.0.0.1.

One small FastAPI app (the HTTP stack the collector already uses) served by
uvicorn on the loopback interface only, for the installer at the edge box (or
through an SSH tunnel): snapshots are camera images and never leave the box.

Routes:
    GET  /                  the page (one static HTML document, no build step)
    GET  /api/snapshots     ``[{index, name, width, height}]`` and the camera's zones
    GET  /snapshot/{index}  the image file as stored
    POST /api/counts        ``{"clicks": [[[x, y], ...], ...]}`` one list per snapshot,
                            image pixels; answers the per-snapshot counts and ends
                            the server, which hands them back to the CLI

The installer clicks each person's feet (the point the product uses to put a
person in a zone), so the clicks give per-zone counts as well as totals.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from lobbywatch.edge.calibrate_cli import CountedSnapshot
from lobbywatch.edge.zones import ZoneMap, ZoneSpec
from lobbywatch.errors import ConfigError, SourceError

BIND = "127.0.0.1"


class Clicks(BaseModel):
    """``POST /api/counts`` body."""

    clicks: list[list[tuple[float, float]]] = Field(
        description="per snapshot, the clicked foot points in image pixels"
    )


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>lobbywatch calibrate: count people</title>
<style>
 body{font-family:system-ui,sans-serif;margin:1rem;background:#f6f6f6}
 #wrap{position:relative;display:inline-block}
 #img{max-width:96vw;max-height:78vh;display:block;cursor:crosshair}
 #zones{position:absolute;left:0;top:0;pointer-events:none}
 #zones polygon{fill:rgba(0,120,255,.12);stroke:#0078ff;stroke-width:2}
 #zones text{fill:#0078ff;font:bold 14px system-ui}
 .dot{position:absolute;width:14px;height:14px;margin:-7px 0 0 -7px;border-radius:50%;
      background:#e4002b;border:2px solid #fff;pointer-events:auto;cursor:pointer}
 button{font-size:1rem;margin-right:.5rem}
</style></head><body>
<h1>Click the feet of every person</h1>
<p>Snapshot <b id="pos"></b> &mdash; <span id="name"></span> &mdash;
 people clicked: <b id="count">0</b>. Click a dot again to remove it.</p>
<p><button id="prev">&larr; previous</button><button id="next">next &rarr;</button>
 <button id="done">done: calibrate</button> <span id="status"></span></p>
<div id="wrap"><img id="img" alt="snapshot"><svg id="zones"></svg></div>
<script>
let snaps=[], zones=[], clicks=[], cur=0;
const img=document.getElementById('img'), wrap=document.getElementById('wrap');
function draw(){
  document.querySelectorAll('.dot').forEach(d=>d.remove());
  const s=snaps[cur], sx=img.clientWidth/s.width, sy=img.clientHeight/s.height;
  const svg=document.getElementById('zones'), W=img.clientWidth, H=img.clientHeight;
  svg.setAttribute('width',W); svg.setAttribute('height',H);
  // zone ids match the protocol's id pattern (letters, digits, - and _): safe as text
  svg.innerHTML=zones.map(z=>'<polygon points="'+
    z.polygon.map(p=>(p[0]*W)+','+(p[1]*H)).join(' ')+'"></polygon><text x="'+
    (z.polygon[0][0]*W+4)+'" y="'+(z.polygon[0][1]*H+16)+'">'+z.id+'</text>').join('');
  clicks[cur].forEach((p,i)=>{
    const d=document.createElement('div'); d.className='dot';
    d.style.left=(p[0]*sx)+'px'; d.style.top=(p[1]*sy)+'px';
    d.onclick=e=>{e.stopPropagation(); clicks[cur].splice(i,1); draw();};
    wrap.appendChild(d);});
  document.getElementById('count').textContent=clicks[cur].length;
  document.getElementById('pos').textContent=(cur+1)+' / '+snaps.length;
  document.getElementById('name').textContent=s.name;
}
function show(i){cur=Math.max(0,Math.min(snaps.length-1,i));
  img.onload=draw; img.src='/snapshot/'+cur;}
img.addEventListener('click',e=>{
  const r=img.getBoundingClientRect(), s=snaps[cur];
  clicks[cur].push([(e.clientX-r.left)*s.width/r.width,(e.clientY-r.top)*s.height/r.height]);
  draw();});
document.getElementById('prev').onclick=()=>show(cur-1);
document.getElementById('next').onclick=()=>show(cur+1);
document.getElementById('done').onclick=async()=>{
  const r=await fetch('/api/counts',{method:'POST',headers:{'Content-Type':'application/json'},
    body:JSON.stringify({clicks})});
  const j=await r.json();
  document.getElementById('status').textContent=r.ok?
    ('saved: '+j.counts.join(', ')+' people; calibrating, see the terminal'):('error: '+j.detail);
};
fetch('/api/snapshots').then(r=>r.json()).then(j=>{
  snaps=j.snapshots; zones=j.zones; clicks=snaps.map(()=>[]); show(0);});
</script></body></html>
"""


def build_app(
    images: Sequence[Path],
    sizes: Sequence[tuple[int, int]],
    zones: Sequence[ZoneSpec],
    on_done: Callable[[list[CountedSnapshot]], None],
) -> Any:
    """The FastAPI app; ``on_done`` receives the counted snapshots once posted.

    Args:
        images: snapshot files.
        sizes: ``(width, height)`` of each image, pixels.
        zones: the camera's zones (normalised polygons) for per-zone counts.
        on_done: called once with the result of a valid ``POST /api/counts``.
    """
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse

    app = FastAPI(title="lobbywatch calibrate", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.get("/api/snapshots")
    def snapshots() -> dict[str, Any]:
        return {
            "snapshots": [
                {"index": i, "name": p.name, "width": w, "height": h}
                for i, (p, (w, h)) in enumerate(zip(images, sizes, strict=True))
            ],
            "zones": [{"id": z.id, "polygon": [list(v) for v in z.polygon]} for z in zones],
        }

    @app.get("/snapshot/{index}")
    def snapshot(index: int) -> FileResponse:
        if not 0 <= index < len(images):
            raise HTTPException(404, f"no snapshot {index} (0..{len(images) - 1})")
        return FileResponse(images[index])

    @app.post("/api/counts")
    def counts(body: Clicks) -> dict[str, Any]:
        if len(body.clicks) != len(images):
            raise HTTPException(
                422, f"clicks for {len(body.clicks)} snapshots, expected {len(images)}"
            )
        out: list[CountedSnapshot] = []
        for path, (w, h), pts in zip(images, sizes, body.clicks, strict=True):
            p = np.asarray(pts, np.float64).reshape(-1, 2)
            if len(p) and (
                not np.isfinite(p).all()
                or (p < 0).any()
                or (p[:, 0] > w).any()
                or (p[:, 1] > h).any()
            ):
                raise HTTPException(422, f"{path.name}: a click lies outside the {w}x{h} image")
            per_zone = None
            if zones:
                zm = ZoneMap.from_specs(list(zones), w, h)
                c = zm.counts(zm.zone_of(p))
                per_zone = {z.id: int(v) for z, v in zip(zones, c, strict=True)}
            clicked = tuple((float(x), float(y)) for x, y in p.tolist())
            out.append(CountedSnapshot(path, len(p), per_zone, clicked))
        on_done(out)
        return {"counts": [s.count for s in out]}

    return app


def collect_counts(
    images: Sequence[Path],
    zones: Sequence[ZoneSpec],
    port: int,
    echo: Callable[[str], None] = print,
) -> list[CountedSnapshot]:
    """Serve the page on 127.0.0.1:``port`` until the installer submits; return the counts."""
    import cv2
    import uvicorn

    sizes = []
    for p in images:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise SourceError(f"cannot decode snapshot {p} (missing, corrupt or not an image)")
        sizes.append((int(img.shape[1]), int(img.shape[0])))
    result: list[list[CountedSnapshot]] = []
    done = threading.Event()

    def on_done(snaps: list[CountedSnapshot]) -> None:
        result.append(snaps)
        done.set()

    app = build_app(images, sizes, zones, on_done)
    server = uvicorn.Server(uvicorn.Config(app, host=BIND, port=port, log_level="warning"))

    def watch() -> None:
        done.wait()
        server.should_exit = True

    threading.Thread(target=watch, daemon=True).start()
    echo(f"open http://{BIND}:{port}/ and click every person's feet on each snapshot")
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits when it cannot bind
        raise ConfigError(f"cannot serve the calibration page on {BIND}:{port}") from exc
    if not result:
        raise ConfigError("calibration page closed before counts were submitted")
    return result[0]
