"use strict";
// <module> -> run -> Cart#total (a class method) -> line (a closure) -> pricing.price x3 (recursive; an
// anonymous function V8 names `pricing.price`) -> hot, which spends its time in a loop TurboFan compiles
// and in JSON.parse's C++ parser calling a reviver back. argv[2]: seconds (default 2). Profiled by
// tests/bpf/test_node_stacks.py; `// calls: f` marks the line a function shows while f runs.

function reviver(key, value) {
  let mix = 0;
  for (let i = 0; i < 300; i++) mix = (mix * 7 + i) % 1009; // calls: reviver-body
  return typeof value === "number" ? value + mix : value;
}

function hot(rounds) {
  let acc = 0;
  for (let i = 0; i < rounds; i++) acc = (acc * 31 + i) % 1000003; // calls: loop
  return acc + JSON.parse(DOC, reviver).length; // calls: parse
}

const pricing = {};
pricing.price = function (depth, rounds) {
  if (depth <= 1) return hot(rounds); // calls: hot
  return pricing.price(depth - 1, rounds); // calls: price
};

function makeLine(scale) {
  const line = (rounds) => pricing.price(3, rounds * scale); // calls: price-first
  return line;
}

class Cart {
  constructor() {
    this.line = makeLine(1);
  }

  total(rounds) {
    return this.line(rounds); // calls: line
  }
}

function run(seconds) {
  const cart = new Cart();
  const end = Date.now() + seconds * 1000;
  let acc = 0;
  while (Date.now() < end) acc += cart.total(20000); // calls: total
  return acc;
}

const DOC = JSON.stringify(Array.from({ length: 40 }, (_, i) => ({ id: i, price: i * 3 })));
console.log(run(Number(process.argv[2] || 2))); // calls: run
