// web/app.js — the page: controls, the tape drawn as an SVG graph, the backward walk, and
// the vanishing-gradient panel. It computes nothing of the model: every value, gradient and
// loss comes from tapegrad (web/tg_web.c, compiled to WebAssembly) as JSON; this file lays
// the numbers out. Full-precision numbers sit in data-value / data-grad attributes (and the
// boxes' tooltips), which the browser test (web/test_web.py) compares with the native library.
'use strict';

const SVG = 'http://www.w3.org/2000/svg';
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------
// tapegrad, through the functions web/tg_web.c exports
// ---------------------------------------------------------------------------------------
let tg = null;

function tgCell(kind, inputs, seed) {
  const p = tg._malloc(8 * inputs.length);
  tg.HEAPF64.set(inputs, p / 8);
  const text = tg.UTF8ToString(tg._tgw_cell(kind === 'lstm' ? 1 : 0, p, seed >>> 0));
  tg._free(p);
  return JSON.parse(text);
}

// ---------------------------------------------------------------------------------------
// numbers as text
// ---------------------------------------------------------------------------------------
function fmt(x, digits) {
  if (x === null || x === undefined) return '—';
  const s = Number(x).toPrecision(digits || 4);
  return String(Number(s)); // drops trailing zeros: 0.5000 -> 0.5
}
function fmtVec(v, digits, limit) {
  if (!v) return '—';
  const n = limit && v.length > limit ? limit : v.length;
  const parts = v.slice(0, n).map((x) => fmt(x, digits));
  if (n < v.length) parts.push('…');
  return v.length === 1 ? parts[0] : '[' + parts.join(', ') + ']';
}
// A vector with its full-precision numbers in data-v, shown at `digits`.
function vecSpan(v, digits) {
  const s = document.createElement('span');
  s.className = 'vec';
  s.textContent = fmtVec(v, digits || 6);
  s.dataset.v = JSON.stringify(v);
  s.title = v ? v.map(String).join(', ') : 'no gradient';
  return s;
}
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}

// ---------------------------------------------------------------------------------------
// the cell: controls and state
// ---------------------------------------------------------------------------------------
const CELL_TEXT = {
  gru: 'r = σ(a_r), z = σ(a_z), n = tanh(x·W_inᵀ + b_in + r ⊙ (h·W_hnᵀ + b_hn)), ' +
       'h′ = (1 − z) ⊙ n + z ⊙ h   (PyTorch’s GRU; input 2, hidden 3)',
  lstm: 'i, f, o = σ(·), g = tanh(·) of x·W_ihᵀ + b_ih + h·W_hhᵀ + b_hh; ' +
        'c′ = f ⊙ c + i ⊙ g, h′ = o ⊙ tanh(c′)   (PyTorch’s LSTM; input 2, hidden 3)',
};

const state = {
  cell: 'gru',
  x: [0.5, -1], h: [0.1, -0.2, 0.3], c: [0.2, 0, -0.4], v: [1, -1, 0.5],
  seed: 0,
  data: null,   // the JSON of tgw_cell
  done: 0,      // backward nodes walked so far (0: forward only)
  selected: -1, // the tensor whose numbers the detail panel shows
};

function makeSliders(container, key, names, lo, hi) {
  names.forEach((name, i) => {
    const row = el('div', { class: 'slider' });
    const lab = el('label', { for: `in-${key}${i}` }, name);
    const range = el('input', { type: 'range', min: lo, max: hi, step: '0.01',
                                value: state[key][i], 'aria-label': name });
    const num = el('input', { type: 'number', id: `in-${key}${i}`, min: lo, max: hi,
                              step: '0.01', value: state[key][i] });
    const set = (src, value) => {
      const x = Number(value);
      if (!Number.isFinite(x)) return;
      state[key][i] = x;
      if (src !== range) range.value = x;
      if (src !== num) num.value = x;
      recompute();
    };
    range.addEventListener('input', () => set(range, range.value));
    num.addEventListener('input', () => set(num, num.value));
    row.append(lab, range, num);
    container.append(row);
  });
}

function recompute() {
  const c = state.cell === 'lstm' ? state.c : [0, 0, 0];
  state.data = tgCell(state.cell, [...state.x, ...state.h, ...c, ...state.v], state.seed);
  state.done = Math.min(state.done, state.data.backward_order.length);
  render();
}

function selectCell(cell) {
  state.cell = cell;
  state.done = 0;
  state.selected = -1;
  for (const b of document.querySelectorAll('.tabs button'))
    b.setAttribute('aria-selected', String(b.dataset.cell === cell));
  $('fs-c').hidden = cell !== 'lstm';
  $('cell-formula').textContent = CELL_TEXT[cell];
  recompute();
}

// ---------------------------------------------------------------------------------------
// what is shown after `done` backward nodes
// ---------------------------------------------------------------------------------------
// The gradient of tensor t as it stood after the first `done` nodes of the backward walk:
// an op's output once its node is reached (it is final by then: every reader came later
// in the tape, so earlier in the walk); before that, and for leaves, the running sum after
// the last walked node that added to it. Both are tapegrad's numbers (the retained
// gradient; the snapshot backward's after_node hook took).
function shownGrad(d, t, done) {
  const order = d.backward_order.slice(0, done);
  const tensor = d.tensors[t];
  if (tensor.kind === 'op' && order.includes(tensor.node)) return tensor.grad;
  for (let r = order.length - 1; r >= 0; r--) {
    const node = d.nodes[order[r]];
    const k = node.in.indexOf(t);
    if (k >= 0 && node.in_grad_after[k]) return node.in_grad_after[k];
  }
  return null;
}
// The same tensor's gradient just before walk step `rank` (1-based) ran.
function gradBefore(d, t, rank) {
  return shownGrad(d, t, rank - 1);
}

// ---------------------------------------------------------------------------------------
// the graph: layers by depth, ordered to keep edges short
// ---------------------------------------------------------------------------------------
const BOX_W = 204, LEAF_W = 168, ROW_H = 20, GAP_X = 14, GAP_Y = 34, PAD = 12;

// Visual boxes: one per leaf tensor that a node reads, one per tape node.
function layout(d) {
  const boxes = [];
  const leafBox = new Map();
  const nodeBox = [];
  d.nodes.forEach((node, i) => {
    for (const t of node.in) {
      if (t < 0 || d.tensors[t].kind === 'op' || leafBox.has(t)) continue;
      leafBox.set(t, boxes.length);
      boxes.push({ leaf: t, inputs: [], depth: 0 });
    }
    nodeBox[i] = boxes.length;
    boxes.push({ node: i, inputs: [], depth: 0 });
  });
  d.nodes.forEach((node, i) => {
    const b = boxes[nodeBox[i]];
    node.in.forEach((t, k) => {
      if (t < 0) return;
      const tensor = d.tensors[t];
      const from = tensor.kind === 'op' ? nodeBox[tensor.node] : leafBox.get(t);
      b.inputs.push({ from, tensor: t, k });
    });
    b.depth = 1 + Math.max(...b.inputs.map((e) => (boxes[e.from].node !== undefined
                                                   ? boxes[e.from].depth : 0)));
  });
  // a leaf sits one row above its first reader
  for (const b of boxes) if (b.node !== undefined)
    for (const e of b.inputs) {
      const src = boxes[e.from];
      if (src.leaf !== undefined && (!src.placed || src.depth > b.depth - 1)) {
        src.depth = b.depth - 1;
        src.placed = true;
      }
    }
  for (const b of boxes) {
    if (b.node !== undefined) {
      const outs = d.nodes[b.node].out;
      b.lines = 1 + outs.length * 2;
    } else b.lines = 3;
    b.h = b.lines * ROW_H * 0.78 + 10;
    b.w = b.node !== undefined ? BOX_W : LEAF_W;
  }
  const rows = [];
  for (const b of boxes) (rows[b.depth] = rows[b.depth] || []).push(b);
  // order each row by the mean x of what feeds it (two sweeps), then centre it
  const rowWidth = (row) => row.reduce((a, b) => a + b.w + GAP_X, 0) - GAP_X;
  const width = Math.max(...rows.map((r) => (r ? rowWidth(r) : 0)));
  let y = PAD;
  for (let pass = 0; pass < 2; pass++) {
    y = PAD;
    rows.forEach((row) => {
      if (!row) return;
      if (pass > 0) {
        const key = (b) => {
          const mid = (o) => (o.x === undefined ? undefined : o.x + o.w / 2);
          const xs = b.inputs.map((e) => mid(boxes[e.from])).filter((x) => x !== undefined);
          const readers = boxes.filter((o) => o.inputs.some((e) => boxes[e.from] === b));
          const ys = readers.map(mid).filter((x) => x !== undefined);
          const all = xs.length ? xs : ys;
          return all.length ? all.reduce((a, x) => a + x, 0) / all.length : mid(b);
        };
        row.sort((a, b) => key(a) - key(b));
      }
      const h = Math.max(...row.map((b) => b.h));
      let x = PAD + (width - rowWidth(row)) / 2;
      row.forEach((b) => { b.x = x; b.y = y; x += b.w + GAP_X; });
      y += h + GAP_Y;
    });
  }
  return { boxes, width: width + 2 * PAD, height: y + PAD - GAP_Y, leafBox, nodeBox };
}

function gateClass(name) {
  const base = name.replace(/_.*/, '');
  return ['r', 'z', 'n', 'i', 'f', 'g', 'o', 'c', 'h', 'loss'].includes(base) ? 'gate-' + base : '';
}

function render() {
  const d = state.data;
  const svg = $('graph');
  const L = layout(d);
  svg.setAttribute('viewBox', `0 0 ${L.width} ${L.height}`);
  svg.style.minWidth = Math.min(L.width, 760) + 'px';
  svg.replaceChildren();
  const current = state.done > 0 ? d.backward_order[state.done - 1] : -1;
  svg.append(svgEl('defs', {}));
  svg.firstChild.innerHTML = '<marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" ' +
    'markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z"/></marker>';
  // edges first, under the boxes
  for (const b of L.boxes) for (const e of b.inputs) {
    const a = L.boxes[e.from];
    const x1 = a.x + a.w / 2, y1 = a.y + a.h, x2 = b.x + b.w / 2, y2 = b.y;
    const my = (y1 + y2) / 2;
    const hot = b.node === current;
    svg.append(svgEl('path', { d: `M${x1},${y1} C${x1},${my} ${x2},${my} ${x2},${y2 - 2}`,
                               class: 'edge' + (hot ? ' edge-hot' : ''), 'marker-end': 'url(#arrow)' }));
  }
  for (const b of L.boxes) svg.append(drawBox(d, b, current));
  const hot = L.boxes.find((b) => b.node === current);
  if (hot) scrollToBox(svg, L, hot);
  renderStep(d);
  renderDetail(d);
  const loss = d.tensors.find((t) => t.name === 'loss');
  $('loss').textContent = 'L = ' + fmt(loss.value[0], 6);
  $('loss').dataset.v = JSON.stringify(loss.value);
  $('btn-step').disabled = state.done >= d.backward_order.length;
  $('btn-all').disabled = state.done >= d.backward_order.length;
}

// Keeps the walked node in view inside the graph's scrolling frame (not the page).
function scrollToBox(svg, L, b) {
  const frame = svg.parentElement;
  const scale = svg.clientWidth / L.width;
  frame.scrollLeft = (b.x + b.w / 2) * scale - frame.clientWidth / 2;
  frame.scrollTop = (b.y + b.h / 2) * scale - frame.clientHeight / 2;
}

function drawBox(d, b, current) {
  const g = svgEl('g', { class: 'box', transform: `translate(${b.x},${b.y})`, tabindex: '0' });
  const lines = [];
  let cls = 'box-op', tensors;
  if (b.leaf !== undefined) {
    const t = d.tensors[b.leaf];
    cls = 'box-' + t.kind;
    tensors = [b.leaf];
    lines.push({ text: (t.name || 'leaf') + ' ' + shapeText(t.shape), cls: 'title' });
    g.dataset.tensor = b.leaf;
  } else {
    const node = d.nodes[b.node];
    tensors = node.out;
    const names = node.out.map((t) => d.tensors[t].name).filter((n) => n);
    lines.push({ text: `#${node.index} ${node.op}` + (names.length === 1 ? ` → ${names[0]}` : ''),
                 cls: 'title' });
    if (names.length === 1) cls += ' ' + gateClass(names[0]);
    g.dataset.node = node.index;
    g.dataset.tensor = node.out[0];
    if (node.index === current) cls += ' current';
    else if (d.backward_order.slice(0, state.done).includes(node.index)) cls += ' walked';
  }
  g.setAttribute('class', 'box ' + cls);
  tensors.forEach((t, k) => {
    const tensor = d.tensors[t];
    const grad = shownGrad(d, t, state.done);
    const prefix = tensors.length > 1 ? `${k}: ` : '';
    const limit = b.leaf !== undefined && tensor.value.length > 3 ? 2 : 3; // a leaf's box is narrower
    lines.push({ text: prefix + '= ' + fmtVec(tensor.value, 3, limit), cls: 'val',
                 tensor: t, value: tensor.value });
    lines.push({ text: prefix + 'd ' + (grad ? fmtVec(grad, 3, limit) : ''), cls: 'grad',
                 tensor: t, grad });
  });
  g.append(svgEl('rect', { width: b.w, height: b.h, rx: 6 }));
  lines.forEach((ln, i) => {
    const text = svgEl('text', { x: 7, y: 15 + i * ROW_H * 0.78, class: ln.cls }, ln.text);
    if (ln.tensor !== undefined) {
      text.dataset.tensor = ln.tensor;
      if (ln.cls === 'val') text.dataset.value = JSON.stringify(ln.value);
      else text.dataset.grad = JSON.stringify(ln.grad);
    }
    g.append(text);
  });
  const tip = tensors.map((t) => {
    const tensor = d.tensors[t];
    const grad = shownGrad(d, t, state.done);
    return `${tensor.name || 'tensor ' + t} ${shapeText(tensor.shape)}\nvalue ${tensor.value.join(', ')}` +
           (grad ? `\ngrad ${grad.join(', ')}` : '');
  }).join('\n');
  g.append(svgEl('title', {}, tip));
  const pick = () => { state.selected = Number(g.dataset.tensor); renderDetail(d); };
  g.addEventListener('click', pick);
  g.addEventListener('keydown', (e) => { if (e.key === 'Enter') pick(); });
  return g;
}

function shapeText(shape) {
  return '(' + shape.join(', ') + (shape.length === 1 ? ',' : '') + ')';
}

// ---------------------------------------------------------------------------------------
// the rule each node applies backward (docs/backprop-through-gates.md)
// ---------------------------------------------------------------------------------------
function ruleFor(d, node) {
  const name = (t) => (t >= 0 ? d.tensors[t].name : '');
  const out = name(node.out[0]);
  const ins = node.in.map(name);
  const producer = (t) => (t >= 0 && d.tensors[t].node >= 0 ? d.nodes[d.tensors[t].node] : null);
  const gate = (g, what) => [`${g} = σ(a_${g})   ${what}`,
                             `da_${g} = d${g} ⊙ ${g} ⊙ (1 − ${g})`,
                             'rule 2: the derivative of σ written with its output'];
  switch (node.op) {
  case 'sum':
    return ['L = Σ (v ⊙ h′)', 'dL/dy = 1 for every element of y', 'the seed of the backward'];
  case 'sigmoid':
    if (out === 'r') return gate('r', '(reset gate)');
    if (out === 'z') return gate('z', '(update gate: 1 keeps h_prev)');
    if (out === 'i') return gate('i', '(input gate)');
    if (out === 'f') return gate('f', '(forget gate: 1 keeps c_prev)');
    if (out === 'o') return gate('o', '(output gate)');
    return ['y = σ(a)', 'da = dy ⊙ y ⊙ (1 − y)', 'rule 2'];
  case 'tanh':
    if (out === 'n') return ['n = tanh(a_n)   (candidate state)', 'da_n = dn ⊙ (1 − n²)', 'rule 2'];
    if (out === 'g') return ['g = tanh(a_g)   (candidate cell)', 'da_g = dg ⊙ (1 − g²)', 'rule 2'];
    if (ins[0] === 'c') return ['tanh(c′)', 'dc += d tanh(c′) ⊙ (1 − tanh²(c′))',
                                'with the next node: dc = dh ⊙ o ⊙ (1 − tanh²(c′)) — rules 1 and 2'];
    return ['y = tanh(a)', 'da = dy ⊙ (1 − y²)', 'rule 2'];
  case 'mul':
    if (ins.includes('v')) return ['y = v ⊙ h′', 'dh′ = dy ⊙ v = v', 'the gradient arriving at the output is v; v is a constant'];
    if (ins[0] === 'r') return ['r ⊙ hn   (inside a_n)', 'dr = da_n ⊙ hn,   dhn = da_n ⊙ r',
                                'rule 3; dhn is what reaches the hidden n block'];
    if (ins[0] === 'z') return ['z ⊙ (h_prev − n)', 'dz = dh ⊙ (h_prev − n),   d(h_prev − n) = dh ⊙ z',
                                'rule 3; dh ⊙ z is the direct path into h_prev: no matrix, no squashing'];
    if (ins[0] === 'f') return ['f ⊙ c_prev', 'df = dc ⊙ c_prev,   dc_prev = dc ⊙ f',
                                'rule 3; dc_prev = dc ⊙ f is the cell’s direct path: only a scaling by f'];
    if (ins[0] === 'i') return ['i ⊙ g', 'di = dc ⊙ g,   dg = dc ⊙ i', 'rule 3'];
    if (ins[0] === 'o') return ['h′ = o ⊙ tanh(c′)', 'do = dh ⊙ tanh(c′),   d tanh(c′) = dh ⊙ o', 'rule 3'];
    return ['y = u ⊙ w', 'du += dy ⊙ w,   dw += dy ⊙ u', 'rule 3'];
  case 'sub':
    return ['h_prev − n', 'dh_prev += dy,   dn −= dy', 'with the adds around it: dn = dh ⊙ (1 − z)'];
  case 'add': {
    if (out === 'h') return ['h′ = n + z ⊙ (h_prev − n)', 'dn += dh,   d[z ⊙ (h_prev − n)] += dh',
                             'rule 1: an add hands its gradient to both inputs'];
    if (out === 'c') return ['c′ = f ⊙ c_prev + i ⊙ g', 'both products receive dc',
                             'rule 1 (dc already holds dh ⊙ o ⊙ (1 − tanh²(c′)))'];
    const reader = d.nodes.find((n) => n.in.includes(node.out[0]));
    const gname = reader ? name(reader.out[0]) : '';
    if (gname === 'r' || gname === 'z' || gname === 'n')
      return [`a_${gname} = (x side) + (h side)`, `both sides receive da_${gname}`, 'rule 1'];
    return ['a = x·W_ihᵀ + b_ih + h_prev·W_hhᵀ + b_hh', 'both projections receive da = [da_i | da_f | da_g | da_o]', 'rule 1'];
  }
  case 'split': {
    const src = producer(node.in[0]);
    const side = src && name(src.in[0]) === 'h_prev' ? 'h' : 'x';
    if (state.cell === 'gru')
      return side === 'x' ? ['[r | z | n] blocks of x·W_ihᵀ + b_ih', 'da_i = [da_r | da_z | da_n]',
                             'each block’s gradient goes back to its columns']
                          : ['[r | z | n] blocks of h_prev·W_hhᵀ + b_hh', 'da_h = [da_r | da_z | dhn]',
                             'the n block differs: r multiplied it'];
    return ['[i | f | g | o] blocks of the sum of projections', 'da = [da_i | da_f | da_g | da_o]',
            'each block’s gradient goes back to its columns'];
  }
  case 'linear':
    if (ins[0] === 'x') return ['y = x·W_ihᵀ + b_ih', 'dx = dy·W_ih,   dW_ih += dyᵀ·x,   db_ih += dy',
                                'rule 3: each weight gradient is a pre-activation gradient times what the weight multiplied'];
    return ['y = h_prev·W_hhᵀ + b_hh', 'dh_prev += dy·W_hh,   dW_hh += dyᵀ·h_prev,   db_hh += dy',
            'rule 3: the path into h_prev through the matrix'];
  default:
    return [node.op, 'the op’s backward', ''];
  }
}

function renderStep(d) {
  const panel = $('step-panel');
  panel.replaceChildren();
  const R = d.backward_order.length;
  if (state.done === 0) {
    panel.append(el('p', { class: 'step-title' }, `Forward only. Backward walks the ${R} nodes in ` +
      'reverse tape order: press “step backward”.'));
    panel.dataset.node = '';
    return;
  }
  const i = d.backward_order[state.done - 1];
  const node = d.nodes[i];
  const [what, formula, why] = ruleFor(d, node);
  panel.dataset.node = String(i);
  panel.dataset.step = String(state.done);
  panel.append(el('p', { class: 'step-title' }, `step ${state.done} of ${R}: node #${i} ${node.op} — ${what}`));
  panel.append(el('p', { class: 'rule' }, formula));
  if (why) panel.append(el('p', { class: 'hint' }, why));
  const table = el('table', { class: 'flow' });
  const row = (label, tname, before, after, dir) => {
    const tr = el('tr', { class: dir });
    tr.append(el('th', {}, label), el('td', {}, tname));
    const tdB = el('td'); if (before !== undefined) tdB.append(before === null ? '—' : vecSpan(before));
    const tdA = el('td'); tdA.append(vecSpan(after));
    tr.append(tdB, tdA);
    table.append(tr);
  };
  const head = el('tr');
  head.append(el('th', {}, ''), el('th', {}, 'tensor'), el('th', {}, 'before'), el('th', {}, 'gradient'));
  table.append(head);
  node.out.forEach((t) => row('in', d.tensors[t].name || `#${i} out`, undefined, d.tensors[t].grad, 'flow-in'));
  node.in.forEach((t, k) => {
    if (t < 0 || !node.in_grad_after[k]) return;
    const tn = d.tensors[t];
    const label = tn.name || (tn.node >= 0 ? `#${tn.node} ${d.nodes[tn.node].op}` : 'input');
    row('out', label, gradBefore(d, t, state.done), node.in_grad_after[k], 'flow-out');
  });
  panel.append(table);
}

function renderDetail(d) {
  const box = $('detail');
  box.replaceChildren();
  const t = state.selected;
  if (t < 0 || t >= d.tensors.length) {
    box.append(el('p', { class: 'hint' }, 'Click a box to see all its numbers.'));
    return;
  }
  const tensor = d.tensors[t];
  const cols = tensor.shape.length === 2 ? tensor.shape[1] : tensor.value.length || 1;
  box.append(el('p', { class: 'step-title' },
    `${tensor.name || 'tensor ' + t} ${shapeText(tensor.shape)} — ${tensor.kind}` +
    (tensor.node >= 0 ? `, made by node #${tensor.node} ${d.nodes[tensor.node].op}` : '')));
  const grad = shownGrad(d, t, state.done);
  for (const [label, v] of [['value', tensor.value], ['gradient', grad]]) {
    box.append(el('p', { class: 'sub' }, label));
    if (!v) { box.append(el('p', { class: 'hint' }, 'none yet')); continue; }
    for (let r = 0; r * cols < v.length; r++) {
      const line = el('div', { class: 'matrow' });
      line.append(vecSpan(v.slice(r * cols, (r + 1) * cols), 6));
      box.append(line);
    }
  }
}

// ---------------------------------------------------------------------------------------
// the vanishing-gradient panel
// ---------------------------------------------------------------------------------------
const train = { running: false, left: 0, losses: [], acc: [], init: null, last: null, model: 1, T: 10 };
const CHUNK = 10;

function startTraining() {
  const model = Number($('model').value), T = Number($('train-T').value);
  const hidden = Number($('train-hidden').value), steps = Number($('train-steps').value);
  const lr = Number($('train-lr').value), seed = Number($('train-seed').value);
  if (tg._tgw_train_start(model, T, hidden, seed >>> 0, lr) !== 0) {
    $('train-status').textContent = 'out of range: T 2–200, hidden 1–64, lr in (0, 1]';
    return;
  }
  Object.assign(train, { running: true, left: Math.max(0, Math.floor(steps)), losses: [], acc: [],
                         model, T, init: JSON.parse(tg.UTF8ToString(tg._tgw_train_steps(0))) });
  train.last = train.init;
  $('btn-train').disabled = true;
  $('btn-stop').disabled = false;
  drawTraining();
  setTimeout(trainChunk, 0);
}

function trainChunk() {
  if (!train.running) return;
  const k = Math.min(CHUNK, train.left);
  const r = JSON.parse(tg.UTF8ToString(tg._tgw_train_steps(k)));
  train.left -= k;
  train.losses.push(...r.losses);
  train.acc.push([r.step, r.accuracy]);
  train.last = r;
  drawTraining();
  if (train.left > 0) setTimeout(trainChunk, 0);
  else stopTraining();
}

function stopTraining() {
  train.running = false;
  $('btn-train').disabled = false;
  $('btn-stop').disabled = true;
  drawTraining();
}

function drawTraining() {
  const r = train.last;
  const st = $('train-status');
  const names = ['tanh RNN', 'GRU', 'LSTM'];
  st.textContent = `${names[train.model]}, T = ${train.T}: step ${r.step}` +
    (train.losses.length ? `, loss ${fmt(train.losses[train.losses.length - 1], 4)}` : '') +
    `, held-out accuracy ${fmt(100 * r.accuracy, 3)}%` + (train.running ? ' — training…' : ' — done');
  st.dataset.step = String(r.step);
  st.dataset.losses = JSON.stringify(train.losses);
  st.dataset.accuracy = String(r.accuracy);
  st.dataset.running = String(train.running);
  drawGradChart();
  drawLossChart();
}

// Axes and a frame in a 480 × 260 chart; returns the plot area.
function frame(svg, xlabel, ylabel) {
  svg.replaceChildren();
  const P = { l: 60, r: 14, t: 10, b: 36, w: 480, h: 260 };
  P.W = P.w - P.l - P.r; P.H = P.h - P.t - P.b;
  svg.append(svgEl('rect', { x: P.l, y: P.t, width: P.W, height: P.H, class: 'plot' }));
  svg.append(svgEl('text', { x: P.l + P.W / 2, y: P.h - 4, class: 'axis-label', 'text-anchor': 'middle' }, xlabel));
  svg.append(svgEl('text', { x: 12, y: P.t + P.H / 2, class: 'axis-label', 'text-anchor': 'middle',
                             transform: `rotate(-90 12 ${P.t + P.H / 2})` }, ylabel));
  return P;
}

function polyline(svg, pts, cls) {
  if (pts.length) svg.append(svgEl('polyline', { points: pts.map((p) => p.join(',')).join(' '), class: cls }));
}

function drawGradChart() {
  const svg = $('chart-grad');
  const P = frame(svg, 'time step t', '‖dL/dh_t‖');
  const series = [[train.init.grad_norm, 'line-init', 'h, at the start'],
                  [train.last.grad_norm, 'line-h', 'h, now']];
  if (train.last.cell_grad_norm) series.push([train.last.cell_grad_norm, 'line-c', 'c, now']);
  const logs = [];
  for (const [v] of series) for (const x of v) if (x > 0) logs.push(Math.log10(x));
  if (!logs.length) return;
  let lo = Math.floor(Math.min(...logs)), hi = Math.ceil(Math.max(...logs));
  if (hi === lo) hi = lo + 1;
  const T = train.T;
  const X = (t) => P.l + (T > 1 ? t / (T - 1) : 0) * P.W;
  const Y = (l) => P.t + (1 - (l - lo) / (hi - lo)) * P.H;
  const step = Math.max(1, Math.ceil((hi - lo) / 6));
  for (let e = lo; e <= hi; e += step) {
    svg.append(svgEl('line', { x1: P.l, x2: P.l + P.W, y1: Y(e), y2: Y(e), class: 'gridline' }));
    svg.append(svgEl('text', { x: P.l - 4, y: Y(e) + 4, class: 'tick', 'text-anchor': 'end' }, '1e' + e));
  }
  for (const t of [0, Math.floor((T - 1) / 2), T - 1])
    svg.append(svgEl('text', { x: X(t), y: P.t + P.H + 14, class: 'tick', 'text-anchor': 'middle' }, String(t)));
  series.forEach(([v, cls, label], j) => {
    const pts = [];
    v.forEach((x, t) => { if (x > 0) pts.push([X(t).toFixed(1), Y(Math.log10(x)).toFixed(1)]); });
    polyline(svg, pts, cls);
    svg.append(svgEl('text', { x: P.l + 8, y: P.t + 14 + 13 * j, class: 'legend ' + cls }, '— ' + label));
  });
  svg.dataset.gradNorm = JSON.stringify(train.last.grad_norm);
}

function drawLossChart() {
  const svg = $('chart-loss');
  const P = frame(svg, 'training step', 'loss  /  accuracy');
  const n = Math.max(train.losses.length + train.left, 1);
  const top = Math.max(1.6, ...train.losses.filter((x) => Number.isFinite(x)));
  const X = (s) => P.l + (s / n) * P.W;
  const Y = (v) => P.t + (1 - v / top) * P.H;
  for (let v = 0; v <= top; v += 0.5) {
    svg.append(svgEl('line', { x1: P.l, x2: P.l + P.W, y1: Y(v), y2: Y(v), class: 'gridline' }));
    svg.append(svgEl('text', { x: P.l - 4, y: Y(v) + 4, class: 'tick', 'text-anchor': 'end' }, String(v)));
  }
  svg.append(svgEl('text', { x: P.l + P.W, y: P.t + P.H + 14, class: 'tick', 'text-anchor': 'end' }, String(n)));
  polyline(svg, train.losses.map((x, s) => [X(s + 1).toFixed(1), Y(x).toFixed(1)]), 'line-loss');
  // accuracy on the same axis, as a fraction (1 = 100%)
  polyline(svg, train.acc.map(([s, a]) => [X(s).toFixed(1), Y(a).toFixed(1)]), 'line-acc');
  svg.append(svgEl('text', { x: P.l + P.W - 6, y: P.t + 14, class: 'legend line-loss', 'text-anchor': 'end' }, '— loss'));
  svg.append(svgEl('text', { x: P.l + P.W - 6, y: P.t + 27, class: 'legend line-acc', 'text-anchor': 'end' }, '— accuracy (1 = 100%)'));
}

// ---------------------------------------------------------------------------------------
// start
// ---------------------------------------------------------------------------------------
function init(module) {
  tg = module;
  makeSliders($('ctl-x'), 'x', ['x₁', 'x₂'], -2, 2);
  makeSliders($('ctl-h'), 'h', ['h₁', 'h₂', 'h₃'], -1, 1);
  makeSliders($('ctl-c'), 'c', ['c₁', 'c₂', 'c₃'], -2, 2);
  makeSliders($('ctl-v'), 'v', ['v₁', 'v₂', 'v₃'], -2, 2);
  $('seed').addEventListener('input', () => {
    const s = Number($('seed').value);
    if (Number.isInteger(s) && s >= 0) { state.seed = s; recompute(); }
  });
  for (const b of document.querySelectorAll('.tabs button'))
    b.addEventListener('click', () => selectCell(b.dataset.cell));
  $('btn-step').addEventListener('click', () => { state.done++; render(); });
  $('btn-all').addEventListener('click', () => { state.done = state.data.backward_order.length; render(); });
  $('btn-reset').addEventListener('click', () => { state.done = 0; render(); });
  window.addEventListener('resize', render); // the graph frame keeps the walked node in view
  $('btn-train').addEventListener('click', startTraining);
  $('btn-stop').addEventListener('click', stopTraining);
  selectCell('gru');
  $('status').textContent = 'tapegrad (float64, WebAssembly) ready';
  $('status').dataset.ready = 'true';
}

if (typeof createTapegrad !== 'function') {
  $('status').textContent = 'web/tapegrad.js is missing: build it with  sh scripts/build-web.sh';
  $('status').classList.add('error');
} else {
  createTapegrad().then(init, (e) => {
    $('status').textContent = 'tapegrad failed to load: ' + e;
    $('status').classList.add('error');
  });
}
