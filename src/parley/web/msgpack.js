// The subset of MessagePack that moshi's protocols use: maps with string keys, strings,
// numbers, booleans, nil, arrays, binary. Audio goes out as float32 (Float32Array input).

export function encode(value) {
  const out = new Writer();
  out.value(value);
  return out.bytes();
}

class Writer {
  constructor() {
    this.buf = new Uint8Array(1024);
    this.view = new DataView(this.buf.buffer);
    this.pos = 0;
  }
  ensure(n) {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(x) { this.ensure(1); this.view.setUint8(this.pos, x); this.pos += 1; }
  u16(x) { this.ensure(2); this.view.setUint16(this.pos, x); this.pos += 2; }
  u32(x) { this.ensure(4); this.view.setUint32(this.pos, x); this.pos += 4; }
  f32(x) { this.ensure(4); this.view.setFloat32(this.pos, x); this.pos += 4; }
  f64(x) { this.ensure(8); this.view.setFloat64(this.pos, x); this.pos += 8; }
  raw(bytes) { this.ensure(bytes.length); this.buf.set(bytes, this.pos); this.pos += bytes.length; }
  length(n, fix, fixMax, c16, c32) {
    if (fix !== null && n <= fixMax) this.u8(fix | n);
    else if (n < 0x10000) { this.u8(c16); this.u16(n); }
    else { this.u8(c32); this.u32(n); }
  }
  value(v) {
    if (v === null || v === undefined) this.u8(0xc0);
    else if (v === true) this.u8(0xc3);
    else if (v === false) this.u8(0xc2);
    else if (typeof v === "number") this.number(v);
    else if (typeof v === "string") {
      const bytes = new TextEncoder().encode(v);
      if (bytes.length < 32) this.u8(0xa0 | bytes.length);
      else if (bytes.length < 0x100) { this.u8(0xd9); this.u8(bytes.length); }
      else this.length(bytes.length, null, 0, 0xda, 0xdb);
      this.raw(bytes);
    } else if (v instanceof Float32Array) {
      this.length(v.length, 0x90, 15, 0xdc, 0xdd);
      for (const x of v) { this.u8(0xca); this.f32(x); }
    } else if (v instanceof Uint8Array) {
      if (v.length < 0x100) { this.u8(0xc4); this.u8(v.length); }
      else this.length(v.length, null, 0, 0xc5, 0xc6);
      this.raw(v);
    } else if (Array.isArray(v)) {
      this.length(v.length, 0x90, 15, 0xdc, 0xdd);
      for (const x of v) this.value(x);
    } else {
      const keys = Object.keys(v);
      this.length(keys.length, 0x80, 15, 0xde, 0xdf);
      for (const k of keys) { this.value(k); this.value(v[k]); }
    }
  }
  number(x) {
    if (Number.isInteger(x) && x >= 0 && x < 0x100000000) {
      if (x < 128) this.u8(x);
      else if (x < 0x100) { this.u8(0xcc); this.u8(x); }
      else if (x < 0x10000) { this.u8(0xcd); this.u16(x); }
      else { this.u8(0xce); this.u32(x); }
    } else if (Number.isInteger(x) && x < 0 && x >= -32) {
      this.u8(x & 0xff);
    } else if (Number.isInteger(x) && x < 0 && x >= -0x80000000) {
      this.u8(0xd2); this.ensure(4); this.view.setInt32(this.pos, x); this.pos += 4;
    } else { this.u8(0xcb); this.f64(x); }
  }
  bytes() { return this.buf.slice(0, this.pos); }
}

export function decode(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const text = new TextDecoder();
  function str(n) { const s = text.decode(bytes.subarray(pos, pos + n)); pos += n; return s; }
  function bin(n) { const b = bytes.slice(pos, pos + n); pos += n; return b; }
  function arr(n) { const a = new Array(n); for (let i = 0; i < n; i++) a[i] = read(); return a; }
  function map(n) { const m = {}; for (let i = 0; i < n; i++) { const k = read(); m[k] = read(); } return m; }
  function read() {
    const t = view.getUint8(pos++);
    if (t < 0x80) return t;
    if (t < 0x90) return map(t & 0x0f);
    if (t < 0xa0) return arr(t & 0x0f);
    if (t < 0xc0) return str(t & 0x1f);
    if (t >= 0xe0) return t - 0x100;
    let v;
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: v = view.getUint8(pos); pos += 1; return bin(v);
      case 0xc5: v = view.getUint16(pos); pos += 2; return bin(v);
      case 0xc6: v = view.getUint32(pos); pos += 4; return bin(v);
      case 0xca: v = view.getFloat32(pos); pos += 4; return v;
      case 0xcb: v = view.getFloat64(pos); pos += 8; return v;
      case 0xcc: v = view.getUint8(pos); pos += 1; return v;
      case 0xcd: v = view.getUint16(pos); pos += 2; return v;
      case 0xce: v = view.getUint32(pos); pos += 4; return v;
      case 0xcf: v = Number(view.getBigUint64(pos)); pos += 8; return v;
      case 0xd0: v = view.getInt8(pos); pos += 1; return v;
      case 0xd1: v = view.getInt16(pos); pos += 2; return v;
      case 0xd2: v = view.getInt32(pos); pos += 4; return v;
      case 0xd3: v = Number(view.getBigInt64(pos)); pos += 8; return v;
      case 0xd9: v = view.getUint8(pos); pos += 1; return str(v);
      case 0xda: v = view.getUint16(pos); pos += 2; return str(v);
      case 0xdb: v = view.getUint32(pos); pos += 4; return str(v);
      case 0xdc: v = view.getUint16(pos); pos += 2; return arr(v);
      case 0xdd: v = view.getUint32(pos); pos += 4; return arr(v);
      case 0xde: v = view.getUint16(pos); pos += 2; return map(v);
      case 0xdf: v = view.getUint32(pos); pos += 4; return map(v);
      default: throw new Error(`unsupported msgpack type 0x${t.toString(16)}`);
    }
  }
  return read();
}
