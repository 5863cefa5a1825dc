# Sourced by scripts/demo.sh: two lockrun processes contend for one lock and
# three for a semaphore of two; each child prints its fencing token.
echo "two contenders for demo/lock; the fencing token (LOCKRUN_TOKEN) grows with each holder:"
waitfor=()
for who in alpha beta; do
	"$BIN/lockrun" demo/lock "echo \"  $who holds the lock, token \$LOCKRUN_TOKEN\"; sleep 0.3" &
	waitfor+=($!)
done
wait "${waitfor[@]}"
echo "three contenders for a semaphore of two (-n 2):"
waitfor=()
for who in one two three; do
	"$BIN/lockrun" -n 2 demo/sem "echo \"  $who in the semaphore\"; sleep 0.3; echo \"  $who leaves\"" &
	waitfor+=($!)
done
wait "${waitfor[@]}"
