// Package teatest holds end-to-end tests of the cockpit: a real engine
// deploys to a fleet of local host directories while a teatest program
// drives the cockpit with key presses and reads what it draws.
package teatest
