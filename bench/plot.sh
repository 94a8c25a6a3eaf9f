# Sourced by the benchmark scripts that draw their sweep with gnuplot.
# plot_preamble <png>: two plots side by side over message size (log2 x
# axis, sizes as B/KB/MB), into <png>
plot_preamble() {
    cat <<EOP
set terminal png size 1200,500 noenhanced
set output "$1"
set multiplot layout 1,2
set logscale x 2
set format x "%.0b%BB"
set xlabel "message size (bytes)"
set grid
set key left top
EOP
}
