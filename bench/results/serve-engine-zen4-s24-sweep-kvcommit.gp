# shiftadd-bench plots; rerun with: gnuplot bench/results/serve-engine-zen4-s24-sweep-kvcommit.gp
set datafile separator ','
set terminal svg size 960,540 dynamic font 'sans,12'
set output 'bench/results/serve-engine-zen4-s24-sweep-kvcommit-throughput.svg'
set title 'shiftaddd aggregate throughput'
set xlabel 'requests in flight (clients x concurrency)'
set ylabel 'generated tokens / s'
set logscale x 2
set grid
set key left top
set yrange [0:*]
plot for [w in '1 2'] 'bench/results/serve-engine-zen4-s24-sweep-kvcommit.csv' skip 1 using 4:($1==w+0 ? $9 : NaN) with linespoints lw 2 pt 7 title sprintf('%s worker(s)', w)
set output 'bench/results/serve-engine-zen4-s24-sweep-kvcommit-latency.svg'
set multiplot layout 1,2 title 'shiftaddd latency (client side)'
set title 'time to first token'
set ylabel 'ms'
set logscale y 10
set yrange [*:*]
set key left top
plot for [w in '1 2'] 'bench/results/serve-engine-zen4-s24-sweep-kvcommit.csv' skip 1 using 4:($1==w+0 ? $11 : NaN) with linespoints lw 2 pt 7 title sprintf('p50, %s w', w), \
     for [w in '1 2'] 'bench/results/serve-engine-zen4-s24-sweep-kvcommit.csv' skip 1 using 4:($1==w+0 ? $13 : NaN) with linespoints lw 2 pt 6 dt 2 title sprintf('p99, %s w', w)
set title 'inter-token latency'
plot for [w in '1 2'] 'bench/results/serve-engine-zen4-s24-sweep-kvcommit.csv' skip 1 using 4:($1==w+0 ? $14 : NaN) with linespoints lw 2 pt 7 title sprintf('p50, %s w', w), \
     for [w in '1 2'] 'bench/results/serve-engine-zen4-s24-sweep-kvcommit.csv' skip 1 using 4:($1==w+0 ? $16 : NaN) with linespoints lw 2 pt 6 dt 2 title sprintf('p99, %s w', w)
unset multiplot
unset logscale y
set output
set terminal pngcairo size 960,540 font 'sans,10'
set output 'bench/results/serve-engine-zen4-s24-sweep-kvcommit-throughput.png'
set title 'shiftaddd aggregate throughput'
set xlabel 'requests in flight (clients x concurrency)'
set ylabel 'generated tokens / s'
set logscale x 2
set grid
set key left top
set yrange [0:*]
plot for [w in '1 2'] 'bench/results/serve-engine-zen4-s24-sweep-kvcommit.csv' skip 1 using 4:($1==w+0 ? $9 : NaN) with linespoints lw 2 pt 7 title sprintf('%s worker(s)', w)
set output 'bench/results/serve-engine-zen4-s24-sweep-kvcommit-latency.png'
set multiplot layout 1,2 title 'shiftaddd latency (client side)'
set title 'time to first token'
set ylabel 'ms'
set logscale y 10
set yrange [*:*]
set key left top
plot for [w in '1 2'] 'bench/results/serve-engine-zen4-s24-sweep-kvcommit.csv' skip 1 using 4:($1==w+0 ? $11 : NaN) with linespoints lw 2 pt 7 title sprintf('p50, %s w', w), \
     for [w in '1 2'] 'bench/results/serve-engine-zen4-s24-sweep-kvcommit.csv' skip 1 using 4:($1==w+0 ? $13 : NaN) with linespoints lw 2 pt 6 dt 2 title sprintf('p99, %s w', w)
set title 'inter-token latency'
plot for [w in '1 2'] 'bench/results/serve-engine-zen4-s24-sweep-kvcommit.csv' skip 1 using 4:($1==w+0 ? $14 : NaN) with linespoints lw 2 pt 7 title sprintf('p50, %s w', w), \
     for [w in '1 2'] 'bench/results/serve-engine-zen4-s24-sweep-kvcommit.csv' skip 1 using 4:($1==w+0 ? $16 : NaN) with linespoints lw 2 pt 6 dt 2 title sprintf('p99, %s w', w)
unset multiplot
unset logscale y
set output
