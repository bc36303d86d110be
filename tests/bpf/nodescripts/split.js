"use strict";
// heavy() runs three times the loop light() runs, so it spends three quarters of the time by construction.
// argv[2]: seconds (default 2). Profiled by tests/bpf/test_node_stacks.py, with node's own --cpu-prof beside.

function spin(rounds, seed) {
  let acc = seed;
  for (let i = 0; i < rounds; i++) acc = (acc * 31 + i) % 1000003;
  return acc;
}

function heavy(rounds) {
  let acc = 0;
  for (let k = 0; k < 3; k++) acc += spinHeavy(rounds, k);
  return acc;
}

function light(rounds) {
  return spinLight(rounds, 7);
}

// Two copies of the loop, so neither is inlined into the other's caller differently.
function spinHeavy(rounds, seed) {
  let acc = seed;
  for (let i = 0; i < rounds; i++) acc = (acc * 31 + i) % 1000003;
  return acc;
}

function spinLight(rounds, seed) {
  let acc = seed;
  for (let i = 0; i < rounds; i++) acc = (acc * 31 + i) % 1000003;
  return acc;
}

const end = Date.now() + Number(process.argv[2] || 2) * 1000;
let total = spin(10, 1);
while (Date.now() < end) total += heavy(30000) + light(30000);
console.log(total);
